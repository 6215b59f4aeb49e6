//! A set of key values as a filter expression: `tidemark_key_in(col, …)`.
//!
//! An incremental model's build narrows each input to the rows whose lineage columns
//! hold a recomputed key, and compares its result with the model's stored rows of
//! those keys only (`TableWriter::changed_among`). Tens of thousands of keys do not fit an `IN` list (DataFusion's
//! recursive rewrites overflowed the stack at 19,000 values), and a semi-join stays
//! where it is put: above the input's merge-on-read view, whose base is then read
//! and merged whole before the join keeps 1 % of it (bench/RESULTS.md). A filter, by
//! contrast, DataFusion's optimizer pushes through the view's projection, union and
//! anti-join down to the base's scan, so the merge handles only the rows that
//! matter. This scalar function is that filter: one expression node whatever the
//! number of keys, immutable (so it may be pushed down), testing each row against a
//! hash set built once.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use deltalake::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Int64Type};
use deltalake::arrow::row::{RowConverter, SortField};
use deltalake::datafusion::common::{HashSet, Result};
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// The values, stored the way the common key types are tested fastest.
#[derive(Debug)]
enum Values {
    /// One integer column (any width, compared as i64).
    Int(HashSet<i64>),
    /// One string column.
    Str(HashSet<String>),
    /// Anything else: the rows in arrow's row format.
    Rows(HashSet<Box<[u8]>>),
}

/// The scalar function behind [`key_in`].
#[derive(Debug)]
struct KeyIn {
    signature: Signature,
    /// The key columns' types: each argument is cast to its column's type first.
    types: Vec<DataType>,
    values: Arc<Values>,
}

// One function per key set: equal only to itself (DataFusion compares functions when
// it deduplicates expressions; two sets are never the same function).
impl PartialEq for KeyIn {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.values, &other.values)
    }
}
impl Eq for KeyIn {}
impl Hash for KeyIn {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (Arc::as_ptr(&self.values) as *const u8 as usize).hash(state)
    }
}

fn int_like(t: &DataType) -> bool {
    t.is_integer()
}

fn str_like(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8)
}

impl KeyIn {
    fn new(keys: &RecordBatch) -> std::result::Result<Self, String> {
        let types: Vec<DataType> = keys
            .schema()
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        let values = match types.as_slice() {
            [t] if int_like(t) => {
                let c = cast(keys.column(0), &DataType::Int64).map_err(|e| e.to_string())?;
                Values::Int(c.as_primitive::<Int64Type>().iter().flatten().collect())
            }
            [t] if str_like(t) => {
                let c = cast(keys.column(0), &DataType::Utf8).map_err(|e| e.to_string())?;
                Values::Str(
                    c.as_string::<i32>()
                        .iter()
                        .flatten()
                        .map(str::to_string)
                        .collect(),
                )
            }
            _ => {
                let conv = converter(&types)?;
                let rows = conv
                    .convert_columns(keys.columns())
                    .map_err(|e| e.to_string())?;
                Values::Rows(rows.iter().map(|r| r.as_ref().into()).collect())
            }
        };
        Ok(Self {
            signature: Signature::any(types.len(), Volatility::Immutable),
            types,
            values: Arc::new(values),
        })
    }
}

fn converter(types: &[DataType]) -> std::result::Result<RowConverter, String> {
    RowConverter::new(types.iter().cloned().map(SortField::new).collect())
        .map_err(|e| e.to_string())
}

impl ScalarUDFImpl for KeyIn {
    fn name(&self) -> &str {
        "tidemark_key_in"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let err =
            |e: deltalake::arrow::error::ArrowError| DataFusionError::ArrowError(Box::new(e), None);
        // Each argument as its key column's type, so 7 (INT) finds 7 (BIGINT).
        let cols: Vec<ArrayRef> = args
            .args
            .into_iter()
            .zip(&self.types)
            .map(|(a, t)| {
                let a = a.into_array(n)?;
                Ok(match self.values.as_ref() {
                    Values::Int(_) => cast(&a, &DataType::Int64).map_err(err)?,
                    Values::Str(_) if a.data_type() == &DataType::Utf8View => a,
                    Values::Str(_) => cast(&a, &DataType::Utf8).map_err(err)?,
                    Values::Rows(_) => cast(&a, t).map_err(err)?,
                })
            })
            .collect::<Result<_>>()?;
        // A NULL key is in no set (as `x IN (…)` is not true for NULL).
        let out: BooleanArray = match self.values.as_ref() {
            Values::Int(set) => cols[0]
                .as_primitive::<Int64Type>()
                .iter()
                .map(|v| Some(v.is_some_and(|v| set.contains(&v))))
                .collect(),
            Values::Str(set) => match cols[0].data_type() {
                DataType::Utf8View => cols[0]
                    .as_string_view()
                    .iter()
                    .map(|v| Some(v.is_some_and(|v| set.contains(v))))
                    .collect(),
                _ => cols[0]
                    .as_string::<i32>()
                    .iter()
                    .map(|v| Some(v.is_some_and(|v| set.contains(v))))
                    .collect(),
            },
            Values::Rows(set) => {
                let conv = converter(&self.types).map_err(DataFusionError::Execution)?;
                let rows = conv.convert_columns(&cols).map_err(err)?;
                (0..n)
                    .map(|i| {
                        let null = cols.iter().any(|c| c.is_null(i));
                        Some(!null && set.contains(rows.row(i).as_ref()))
                    })
                    .collect()
            }
        };
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// `cols IN keys` as one filter expression (`keys`' columns matched in order).
pub fn key_in(cols: Vec<Expr>, keys: &RecordBatch) -> std::result::Result<Expr, String> {
    if cols.len() != keys.num_columns() {
        return Err(format!(
            "{} column(s) to match against keys of {}",
            cols.len(),
            keys.num_columns()
        ));
    }
    Ok(ScalarUDF::new_from_impl(KeyIn::new(keys)?).call(cols))
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::array::{Int32Array, Int64Array, StringArray};
    use deltalake::arrow::datatypes::{Field, Schema};
    use deltalake::datafusion::logical_expr::col;
    use deltalake::datafusion::prelude::SessionContext;

    async fn kept(data: RecordBatch, filter: Expr) -> Vec<RecordBatch> {
        let ctx = SessionContext::new();
        ctx.read_batch(data)
            .unwrap()
            .filter(filter)
            .unwrap()
            .collect()
            .await
            .unwrap()
    }

    fn batch(cols: Vec<(&str, ArrayRef)>) -> RecordBatch {
        let schema = Schema::new(
            cols.iter()
                .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
                .collect::<Vec<_>>(),
        );
        RecordBatch::try_new(Arc::new(schema), cols.into_iter().map(|(_, a)| a).collect()).unwrap()
    }

    #[tokio::test]
    async fn integers_of_another_width_strings_and_composite_keys_match_as_in_would() {
        // Keys are BIGINT, the column INT; NULLs match nothing.
        let keys = batch(vec![("k", Arc::new(Int64Array::from(vec![2, 4, 9])))]);
        let data = batch(vec![(
            "c",
            Arc::new(Int32Array::from(vec![
                Some(1),
                Some(2),
                None,
                Some(4),
                Some(5),
            ])),
        )]);
        let out = kept(data, key_in(vec![col("c")], &keys).unwrap()).await;
        let got: Vec<i32> = out
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_primitive::<deltalake::arrow::datatypes::Int32Type>()
                    .values()
                    .to_vec()
            })
            .collect();
        assert_eq!(got, vec![2, 4]);

        let keys = batch(vec![("k", Arc::new(StringArray::from(vec!["a", "c"])))]);
        let data = batch(vec![(
            "c",
            Arc::new(StringArray::from(vec![
                Some("a"),
                Some("b"),
                None,
                Some("c"),
            ])),
        )]);
        let out = kept(data, key_in(vec![col("c")], &keys).unwrap()).await;
        assert_eq!(out.iter().map(|b| b.num_rows()).sum::<usize>(), 2);

        let keys = batch(vec![
            ("a", Arc::new(Int64Array::from(vec![1, 2]))),
            ("b", Arc::new(StringArray::from(vec!["x", "y"]))),
        ]);
        let data = batch(vec![
            ("a", Arc::new(Int64Array::from(vec![1, 1, 2, 2]))),
            ("b", Arc::new(StringArray::from(vec!["x", "y", "x", "y"]))),
        ]);
        let out = kept(data, key_in(vec![col("a"), col("b")], &keys).unwrap()).await;
        let pairs: Vec<(i64, String)> = out
            .iter()
            .flat_map(|b| {
                let a = b.column(0).as_primitive::<Int64Type>().clone();
                let s = cast(b.column(1), &DataType::Utf8).unwrap();
                let s = s.as_string::<i32>().clone();
                (0..b.num_rows())
                    .map(|i| (a.value(i), s.value(i).to_string()))
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(pairs, vec![(1, "x".to_string()), (2, "y".to_string())]);
    }
}
