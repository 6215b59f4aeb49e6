//! Whether a model's table equals its SQL run now on the same inputs: what a whole
//! rebuild would land. The equivalence tests check every example model with it after
//! incremental builds and killed builds.

use deltalake::arrow::array::RecordBatch;
use tidemark_query::Engine;

use crate::project::Model;

/// How a model's table and its SQL compare.
#[derive(Debug, Clone, Default)]
pub struct Drift {
    /// Rows in the table.
    pub landed: usize,
    /// Rows the SQL returns.
    pub expected: usize,
    /// A few rows only the table has (rendered `a|b|c`).
    pub only_landed: Vec<String>,
    /// A few rows only the SQL returns.
    pub only_expected: Vec<String>,
}

impl Drift {
    /// The table equals the SQL's result.
    pub fn is_none(&self) -> bool {
        self.only_landed.is_empty() && self.only_expected.is_empty() && self.landed == self.expected
    }
}

fn rendered(batches: &[RecordBatch]) -> Result<Vec<String>, String> {
    tidemark_query::sorted_lines(batches, "|").map_err(|e| e.to_string())
}

/// [`drift`] of every model of `project` that stores rows (views store nothing).
pub async fn drift_all(
    engine: &Engine,
    project: &crate::Project,
) -> Result<Vec<(String, Drift)>, String> {
    let mut out = Vec::new();
    for m in project.models.values() {
        if m.config.materialized == crate::Materialized::View {
            continue;
        }
        out.push((m.name.clone(), drift(engine, m).await?));
    }
    Ok(out)
}

/// Compare `model`'s table (its own columns) with its SQL on `engine`'s inputs.
pub async fn drift(engine: &Engine, model: &Model) -> Result<Drift, String> {
    let df = engine.sql(&model.sql).await.map_err(|e| e.to_string())?;
    let cols: Vec<String> = df
        .schema()
        .fields()
        .iter()
        .map(|f| tidemark_lake::quote(f.name()))
        .collect();
    let expected = rendered(&df.collect().await.map_err(|e| e.to_string())?)?;
    let landed = engine
        .query(&format!(
            "SELECT {} FROM {}",
            cols.join(", "),
            model.target.sql()
        ))
        .await
        .map_err(|e| e.to_string())?;
    let landed = rendered(&landed)?;
    let mut d = Drift {
        landed: landed.len(),
        expected: expected.len(),
        ..Default::default()
    };
    // Both sorted: one merge pass finds the rows on one side only.
    let (mut i, mut j) = (0, 0);
    while i < landed.len() || j < expected.len() {
        match (landed.get(i), expected.get(j)) {
            (Some(a), Some(b)) if a == b => {
                i += 1;
                j += 1;
            }
            (Some(a), Some(b)) if a < b => {
                d.only_landed.push(a.clone());
                i += 1;
            }
            (Some(_), Some(b)) | (None, Some(b)) => {
                d.only_expected.push(b.clone());
                j += 1;
            }
            (Some(a), None) => {
                d.only_landed.push(a.clone());
                i += 1;
            }
            (None, None) => break,
        }
    }
    d.only_landed.truncate(5);
    d.only_expected.truncate(5);
    Ok(d)
}
