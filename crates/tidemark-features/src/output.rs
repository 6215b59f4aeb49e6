//! Writing a training set: streamed batch by batch from the plan to a Parquet or
//! CSV file, never collected, with progress counted in rows.

use std::path::{Path, PathBuf};

use arrow::csv::WriterBuilder;
use deltalake::parquet::arrow::AsyncArrowWriter;
use deltalake::parquet::basic::{Compression, ZstdLevel};
use deltalake::parquet::file::properties::WriterProperties;
use futures::StreamExt;
use indicatif::ProgressBar;
use tokio::io::AsyncWriteExt;

use crate::training::{extension, TrainingSet};
use crate::{Error, Result};

/// A training set's file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Parquet, zstd-compressed, one row group per 1M rows at most.
    Parquet,
    /// CSV with a header line; timestamps in RFC 3339.
    Csv,
}

impl Format {
    /// The format a file name asks for (`.parquet`, `.csv`).
    pub fn from_path(path: &Path) -> Option<Self> {
        match extension(path).as_deref() {
            Some("parquet") => Some(Format::Parquet),
            Some("csv") => Some(Format::Csv),
            _ => None,
        }
    }

    /// `parquet` or `csv`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "parquet" => Some(Format::Parquet),
            "csv" => Some(Format::Csv),
            _ => None,
        }
    }
}

/// What [`write`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Rows written (one per entity row).
    pub rows: u64,
}

/// Run the training set's plan and stream its rows to `out`. The file appears
/// whole or not at all: rows go to a sibling `.partial` file, renamed over `out` at
/// the end, so a run that fails or is killed never leaves a truncated file that
/// looks complete. `bar` counts rows (its length is set to the entity rows).
pub async fn write(
    set: TrainingSet,
    out: &Path,
    format: Format,
    bar: &ProgressBar,
) -> Result<Written> {
    let partial = partial_path(out);
    bar.set_length(set.rows);
    let result = match stream_to(set, &partial, format, bar).await {
        Ok(w) => tokio::fs::rename(&partial, out)
            .await
            .map(|()| w)
            .map_err(io(out)),
        Err(e) => Err(e),
    };
    if result.is_err() {
        // Nothing half-written is left behind; the error is what matters.
        let _ = tokio::fs::remove_file(&partial).await;
    }
    bar.finish();
    result
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io { path, source }
}

async fn stream_to(
    set: TrainingSet,
    partial: &Path,
    format: Format,
    bar: &ProgressBar,
) -> Result<Written> {
    let schema = set.frame.schema().inner().clone();
    let mut stream = set.frame.execute_stream().await?;
    let file = tokio::fs::File::create(partial)
        .await
        .map_err(io(partial))?;
    let mut rows = 0u64;
    match format {
        Format::Parquet => {
            let props = WriterProperties::builder()
                .set_compression(Compression::ZSTD(ZstdLevel::default()))
                .set_max_row_group_row_count(Some(1 << 20))
                .build();
            let mut w = AsyncArrowWriter::try_new(file, schema, Some(props))?;
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                rows += batch.num_rows() as u64;
                w.write(&batch).await?;
                bar.inc(batch.num_rows() as u64);
            }
            w.close().await?;
        }
        Format::Csv => {
            let mut file = tokio::io::BufWriter::new(file);
            let mut buf = Vec::new();
            let mut first = true;
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                // The header goes with the first batch (an empty result still gets
                // one below).
                let mut w = WriterBuilder::new().with_header(first).build(&mut buf);
                w.write(&batch)?;
                drop(w);
                first = false;
                file.write_all(&buf).await.map_err(io(partial))?;
                buf.clear();
                rows += batch.num_rows() as u64;
                bar.inc(batch.num_rows() as u64);
            }
            if first {
                let empty = deltalake::arrow::array::RecordBatch::new_empty(schema);
                let mut w = WriterBuilder::new().with_header(true).build(&mut buf);
                w.write(&empty)?;
                drop(w);
                file.write_all(&buf).await.map_err(io(partial))?;
            }
            file.flush().await.map_err(io(partial))?;
            file.into_inner().sync_all().await.map_err(io(partial))?;
        }
    }
    Ok(Written { rows })
}

fn partial_path(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "training-set".into());
    out.with_file_name(format!(".{name}.partial"))
}
