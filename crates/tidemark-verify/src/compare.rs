//! Rows compared by value, as the type mapping defines them: the source's rows are
//! decoded by the snapshot's own decoders into the lake's Arrow types, so equal
//! values are equal Arrow values (decimals exact, instants to the microsecond,
//! unsigned integers in their wider types). JSON is compared as parsed JSON, so a
//! difference in spacing or key order is not a difference.

use std::collections::BTreeMap;

use deltalake::arrow::array::{ArrayRef, RecordBatch};
use deltalake::arrow::row::OwnedRow;
use deltalake::datafusion::common::ScalarValue;
use serde::Serialize;
use tidemark_core::schema::TableSchema;

use crate::lake::Keys;
use crate::Result;

/// What kind of difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The source has the key, the lake does not.
    MissingInLake,
    /// The lake has a key the source does not.
    ExtraInLake,
    /// Both have the key with different values.
    Different,
}

/// One difference, with both sides' values (text, NULL as `None`).
#[derive(Debug, Clone, Serialize)]
pub struct Difference {
    /// Kind.
    pub kind: Kind,
    /// The key, column by column.
    pub key: BTreeMap<String, Option<String>>,
    /// The columns that differ (for `Different`).
    pub columns: Vec<String>,
    /// The source's row.
    pub source: Option<BTreeMap<String, Option<String>>>,
    /// The lake's row.
    pub lake: Option<BTreeMap<String, Option<String>>>,
}

/// Rows of one side: key → (batch, row), from batches whose first columns are the
/// table's source columns.
pub struct Side<'a> {
    batches: &'a [RecordBatch],
    rows: BTreeMap<OwnedRow, (usize, usize)>,
}

impl<'a> Side<'a> {
    /// Index `batches` by key.
    pub fn new(keys: &Keys, schema: &TableSchema, batches: &'a [RecordBatch]) -> Result<Self> {
        let n = schema.columns.len();
        let mut rows = BTreeMap::new();
        for (b, batch) in batches.iter().enumerate() {
            let cols: Vec<ArrayRef> = batch.columns()[..n].to_vec();
            let k = keys.rows(&cols)?;
            for r in 0..batch.num_rows() {
                rows.insert(k.row(r).owned(), (b, r));
            }
        }
        Ok(Self { batches, rows })
    }

    fn value(&self, at: (usize, usize), c: usize) -> Result<ScalarValue> {
        Ok(ScalarValue::try_from_array(
            self.batches[at.0].column(c),
            at.1,
        )?)
    }

    fn row(
        &self,
        schema: &TableSchema,
        at: (usize, usize),
    ) -> Result<BTreeMap<String, Option<String>>> {
        let mut m = BTreeMap::new();
        for (i, c) in schema.columns.iter().enumerate() {
            m.insert(c.name.clone(), text(&self.value(at, i)?));
        }
        Ok(m)
    }
}

fn text(v: &ScalarValue) -> Option<String> {
    (!v.is_null()).then(|| v.to_string())
}

/// Compare `source` with `lake`; differences in key order. `limit` bounds how many
/// are described with values; all are counted.
pub fn compare(
    schema: &TableSchema,
    source: &Side<'_>,
    lake: &Side<'_>,
    counts: &mut Counts,
    out: &mut Vec<Difference>,
    limit: usize,
) -> Result<()> {
    let json: Vec<bool> = schema
        .columns
        .iter()
        .map(|c| c.data_type.eq_ignore_ascii_case("json"))
        .collect();
    let key = |side: &Side<'_>, at| -> Result<BTreeMap<String, Option<String>>> {
        let mut m = BTreeMap::new();
        for &i in &schema.key {
            m.insert(schema.columns[i].name.clone(), text(&side.value(at, i)?));
        }
        Ok(m)
    };
    let mut push = |d: Difference, counts: &mut Counts| {
        match d.kind {
            Kind::MissingInLake => counts.missing_in_lake += 1,
            Kind::ExtraInLake => counts.extra_in_lake += 1,
            Kind::Different => counts.different += 1,
        }
        if out.len() < limit {
            out.push(d);
        }
    };
    let mut all: Vec<&OwnedRow> = source.rows.keys().chain(lake.rows.keys()).collect();
    all.sort();
    all.dedup();
    for k in all {
        match (source.rows.get(k), lake.rows.get(k)) {
            (Some(&s), None) => push(
                Difference {
                    kind: Kind::MissingInLake,
                    key: key(source, s)?,
                    columns: vec![],
                    source: Some(source.row(schema, s)?),
                    lake: None,
                },
                counts,
            ),
            (None, Some(&l)) => push(
                Difference {
                    kind: Kind::ExtraInLake,
                    key: key(lake, l)?,
                    columns: vec![],
                    source: None,
                    lake: Some(lake.row(schema, l)?),
                },
                counts,
            ),
            (Some(&s), Some(&l)) => {
                let mut cols = Vec::new();
                for (i, c) in schema.columns.iter().enumerate() {
                    let (a, b) = (source.value(s, i)?, lake.value(l, i)?);
                    if !same(&a, &b, json[i]) {
                        cols.push(c.name.clone());
                    }
                }
                if !cols.is_empty() {
                    push(
                        Difference {
                            kind: Kind::Different,
                            key: key(source, s)?,
                            columns: cols,
                            source: Some(source.row(schema, s)?),
                            lake: Some(lake.row(schema, l)?),
                        },
                        counts,
                    );
                }
            }
            (None, None) => unreachable!("the key came from one side"),
        }
    }
    Ok(())
}

fn same(a: &ScalarValue, b: &ScalarValue, json: bool) -> bool {
    if a == b {
        return true;
    }
    if json {
        if let (ScalarValue::Utf8(Some(x)), ScalarValue::Utf8(Some(y))) = (a, b) {
            let parse = |s: &str| serde_json::from_str::<serde_json::Value>(s).ok();
            return matches!((parse(x), parse(y)), (Some(p), Some(q)) if p == q);
        }
    }
    false
}

/// Differences counted by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Keys the lake lacks.
    pub missing_in_lake: u64,
    /// Keys only the lake has.
    pub extra_in_lake: u64,
    /// Keys whose values differ.
    pub different: u64,
}

impl Counts {
    /// All differences.
    pub fn total(&self) -> u64 {
        self.missing_in_lake + self.extra_in_lake + self.different
    }
}
