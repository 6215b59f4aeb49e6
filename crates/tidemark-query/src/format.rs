//! Printing results.

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::util::pretty::pretty_format_batches;

use crate::{Error, Result};

/// How `tidemark sql` prints results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// An aligned text table.
    #[default]
    Table,
    /// CSV with a header line.
    Csv,
    /// One JSON object per line.
    Json,
}

/// Render batches in a format.
pub fn format_batches(batches: &[RecordBatch], format: OutputFormat) -> Result<String> {
    let err = |e: deltalake::arrow::error::ArrowError| Error::Sql(e.to_string());
    match format {
        OutputFormat::Table => Ok(pretty_format_batches(batches).map_err(err)?.to_string()),
        OutputFormat::Csv => {
            let mut buf = Vec::new();
            {
                let mut w = deltalake::arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut buf);
                for b in batches {
                    w.write(b).map_err(err)?;
                }
            }
            Ok(String::from_utf8_lossy(&buf).into_owned())
        }
        OutputFormat::Json => {
            let mut buf = Vec::new();
            {
                let mut w = deltalake::arrow::json::LineDelimitedWriter::new(&mut buf);
                for b in batches {
                    w.write(b).map_err(err)?;
                }
                w.finish().map_err(err)?;
            }
            Ok(String::from_utf8_lossy(&buf).into_owned())
        }
    }
}

/// Each row as its cells' text joined by `sep` (NULL spelled out), sorted: results
/// compared whatever their order (model drift, the test suites).
pub fn sorted_lines(
    batches: &[RecordBatch],
    sep: &str,
) -> std::result::Result<Vec<String>, deltalake::arrow::error::ArrowError> {
    use deltalake::arrow::util::display::{ArrayFormatter, FormatOptions};
    let opts = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for b in batches {
        let fmts = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        for r in 0..b.num_rows() {
            let cells: Vec<String> = fmts.iter().map(|f| f.value(r).to_string()).collect();
            out.push(cells.join(sep));
        }
    }
    out.sort();
    Ok(out)
}
