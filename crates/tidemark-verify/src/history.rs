//! History checks that need no source history: what the history a reader sees must
//! satisfy whatever the source did.
//!
//! * **Overlap**: a key's versions, as `db_history.t` and `AS OF` read them (the
//!   closed history with its stored `_valid_to`, the base, the tail), never overlap,
//!   and at most one is open.
//! * **Delete without a version**: in the log, a delete follows a live version of
//!   its key (a delete of a key the lake never had, or deleted twice, means a lost
//!   or doubled change).
//! * **Position order**: a key's versions in validity order are in binlog order.
//! * **Current differs**: each key's current row equals its last version in the log,
//!   and a key is current exactly when that version is not a delete.

use std::collections::{BTreeMap, HashMap};

use deltalake::arrow::array::{ArrayRef, AsArray, RecordBatch};
use deltalake::arrow::datatypes::DataType;
use deltalake::datafusion::common::{Column, ScalarValue};
use deltalake::datafusion::functions_window::expr_fn::{lag, lead};
use deltalake::datafusion::logical_expr::{cast, col, lit, Expr, ExprFunctionExt};
use deltalake::datafusion::prelude::DataFrame;
use serde::Serialize;
use tidemark_core::schema::{INGEST_TS, OP, SEQ, SOURCE_POS, VALID_FROM, VALID_TO};

use crate::compare::{self, Counts, Side};
use crate::lake::{self, Keys, LakeTable};
use crate::{render, Result};

/// What was found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HistoryReport {
    /// Versions checked.
    pub versions: u64,
    /// Violations found.
    pub violations: u64,
    /// The first ones, described.
    pub examples: Vec<Violation>,
}

/// One violation.
#[derive(Debug, Clone, Serialize)]
pub struct Violation {
    /// `overlap`, `delete_without_version`, `position_order`, `current_differs`.
    pub kind: &'static str,
    /// The key.
    pub key: BTreeMap<String, Option<String>>,
    /// What is wrong, with the values.
    pub detail: String,
}

/// Buckets of the current-vs-open-version comparison (by key hash).
const BUCKETS: u32 = 4096;

/// Run every check on `lake`.
pub async fn check(lake: &LakeTable, show: usize) -> Result<HistoryReport> {
    let mut rep = HistoryReport::default();
    let schema = &lake.schema;
    let keys: Vec<Expr> = schema
        .key_names()
        .iter()
        .map(|k| col(Column::new_unqualified(*k)))
        .collect();

    // Delete without a version, position order: one window over the log.
    let order = || lake::binlog_order_udf().call(vec![cast(col(SOURCE_POS), DataType::Utf8)]);
    let w = |e: Expr| {
        e.partition_by(keys.clone())
            .order_by(vec![
                col(VALID_FROM).sort(true, false),
                col(SEQ).sort(true, false),
                col(INGEST_TS).sort(true, false),
            ])
            .build()
    };
    let log = lake.log_frame()?;
    let found = log
        .select(
            keys.iter()
                .cloned()
                .chain([
                    col(OP),
                    col(VALID_FROM),
                    col(SEQ),
                    col(INGEST_TS),
                    col(SOURCE_POS),
                    order().alias("__o"),
                ])
                .collect::<Vec<_>>(),
        )?
        .window(vec![
            w(lag(col(OP), Some(1), None))?.alias("__prev_op"),
            w(lag(order(), Some(1), None))?.alias("__prev_o"),
            w(lag(col(SOURCE_POS), Some(1), None))?.alias("__prev_pos"),
        ])?
        .filter(
            col(OP)
                .eq(lit("d"))
                .and(col("__prev_op").is_null().or(col("__prev_op").eq(lit("d"))))
                .or(col("__o").lt(col("__prev_o"))),
        )?;
    for b in found.collect().await? {
        let op = cast_str(b.column_by_name(OP).expect("selected"))?;
        let pos = cast_str(b.column_by_name(SOURCE_POS).expect("selected"))?;
        let prev_pos = cast_str(b.column_by_name("__prev_pos").expect("selected"))?;
        let prev_op = cast_str(b.column_by_name("__prev_op").expect("selected"))?;
        for r in 0..b.num_rows() {
            let (kind, detail) = if op.as_string::<i32>().value(r) == "d"
                && (prev_op.is_null(r) || prev_op.as_string::<i32>().value(r) == "d")
            {
                (
                    "delete_without_version",
                    format!(
                        "a delete at {} follows {}",
                        pos.as_string::<i32>().value(r),
                        if prev_op.is_null(r) {
                            "no version of the key".to_string()
                        } else {
                            format!(
                                "another delete (at {})",
                                prev_pos.as_string::<i32>().value(r)
                            )
                        }
                    ),
                )
            } else {
                (
                    "position_order",
                    format!(
                        "the version from {} is later in validity than the one from {}",
                        pos.as_string::<i32>().value(r),
                        prev_pos.as_string::<i32>().value(r)
                    ),
                )
            };
            rep.push(show, kind, key_of(lake, &b, r)?, detail);
        }
    }

    // Overlap: the versions as readers see them.
    let live = lake.versions().await?;
    let next = lead(col(VALID_FROM), Some(1), None)
        .partition_by(keys.clone())
        .order_by(vec![
            col(VALID_FROM).sort(true, false),
            col(VALID_TO).sort(true, false),
        ])
        .build()?
        .alias("__next");
    rep.versions = live.clone().count().await? as u64;
    let overlapping = live
        .clone()
        .select(
            keys.iter()
                .cloned()
                .chain([col(VALID_FROM), col(VALID_TO)])
                .collect::<Vec<_>>(),
        )?
        .window(vec![next])?
        .filter(
            col("__next")
                .is_not_null()
                .and(col(VALID_TO).is_null().or(col(VALID_TO).gt(col("__next")))),
        )?;
    for b in overlapping.collect().await? {
        for r in 0..b.num_rows() {
            let v = |c: &str| -> Result<String> {
                Ok(
                    ScalarValue::try_from_array(b.column_by_name(c).expect("selected"), r)?
                        .to_string(),
                )
            };
            let detail = format!(
                "the version valid from {} to {} overlaps the next, valid from {}",
                v(VALID_FROM)?,
                v(VALID_TO)?,
                v("__next")?
            );
            rep.push(show, "overlap", key_of(lake, &b, r)?, detail);
        }
    }

    // Current differs: the current table against each key's last version in the
    // log, derived from the log alone (a window over it, which spills to disk
    // beyond the session's memory), so a current table that lost, gained or
    // changed a row is caught even where the versions read its base. Bucketed
    // checksums of both, then the rows of the buckets that differ.
    let open = lake.last_versions()?;
    let current = lake.current().await?;
    let k = Keys::new(schema)?;
    let n = schema.columns.len();
    let sums = |df: DataFrame| {
        let k = &k;
        async move {
            let mut m: HashMap<u32, (u64, u32)> = HashMap::new();
            lake::for_each_batch(df, |b| {
                let cols: Vec<ArrayRef> = b.columns()[..n].to_vec();
                let rows = k.rows(&cols)?;
                for (r, crc) in render::row_crcs(&schema.name.source(), &cols)?
                    .into_iter()
                    .enumerate()
                {
                    let e = m
                        .entry(crc32fast::hash(rows.row(r).as_ref()) % BUCKETS)
                        .or_default();
                    e.0 += 1;
                    e.1 ^= crc;
                }
                Ok(())
            })
            .await?;
            Ok::<_, crate::Error>(m)
        }
    };
    let (a, b) = (sums(open.clone()).await?, sums(current.clone()).await?);
    let mut bad: Vec<u32> = a
        .keys()
        .chain(b.keys())
        .filter(|x| a.get(x) != b.get(x))
        .copied()
        .collect();
    bad.sort_unstable();
    bad.dedup();
    if !bad.is_empty() {
        let take = |df: DataFrame| {
            let k = &k;
            let bad = &bad;
            async move {
                let mut out: Vec<RecordBatch> = Vec::new();
                lake::for_each_batch(df, |b| {
                    let cols: Vec<ArrayRef> = b.columns()[..n].to_vec();
                    let rows = k.rows(&cols)?;
                    let idx: Vec<u32> = (0..b.num_rows())
                        .filter(|&r| {
                            bad.binary_search(&(crc32fast::hash(rows.row(r).as_ref()) % BUCKETS))
                                .is_ok()
                        })
                        .map(|r| r as u32)
                        .collect();
                    if !idx.is_empty() {
                        let idx = deltalake::arrow::array::UInt32Array::from(idx);
                        out.push(deltalake::arrow::compute::take_record_batch(b, &idx)?);
                    }
                    Ok(())
                })
                .await?;
                Ok::<_, crate::Error>(out)
            }
        };
        let (va, vb) = (take(open).await?, take(current).await?);
        let (sa, sb) = (Side::new(&k, schema, &va)?, Side::new(&k, schema, &vb)?);
        let mut counts = Counts::default();
        let mut diffs = Vec::new();
        compare::compare(schema, &sa, &sb, &mut counts, &mut diffs, show)?;
        rep.violations += counts.total() - diffs.len() as u64;
        for d in diffs {
            let detail = match d.kind {
                compare::Kind::MissingInLake => "the key's last version in the log is live, but the current table lacks it".to_string(),
                compare::Kind::ExtraInLake => "the current table has the key, but the log has no live version of it".to_string(),
                compare::Kind::Different => format!(
                    "the current row differs from the key's last version in the log in {}: current {:?}, version {:?}",
                    d.columns.join(", "),
                    d.lake,
                    d.source
                ),
            };
            rep.push(show, "current_differs", d.key, detail);
        }
    }
    Ok(rep)
}

impl HistoryReport {
    fn push(
        &mut self,
        show: usize,
        kind: &'static str,
        key: BTreeMap<String, Option<String>>,
        detail: String,
    ) {
        self.violations += 1;
        if self.examples.len() < show {
            self.examples.push(Violation { kind, key, detail });
        }
    }
}

fn cast_str(a: &ArrayRef) -> Result<ArrayRef> {
    Ok(deltalake::arrow::compute::cast(a, &DataType::Utf8)?)
}

fn key_of(lake: &LakeTable, b: &RecordBatch, r: usize) -> Result<BTreeMap<String, Option<String>>> {
    let mut m = BTreeMap::new();
    for k in lake.schema.key_names() {
        let v = ScalarValue::try_from_array(b.column_by_name(k).expect("selected"), r)?;
        m.insert(k.to_string(), (!v.is_null()).then(|| v.to_string()));
    }
    Ok(m)
}
