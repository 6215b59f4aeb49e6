//! `COPY (query) TO STDOUT` and `COPY table TO STDOUT`: what psql's
//! `\copy (query) to 'file'` sends, and how tools export large results. The query is
//! planned like any other (time travel, grants, masks), and its rows are encoded by
//! pgwire's `CopyEncoder` (text, CSV or binary, with PostgreSQL's options) as they
//! stream. COPY to or from a server file or program is refused: the server's files
//! are not the client's business.

use std::sync::Arc;

use arrow_pg::encoder::encode_value;
use bytes::Bytes;
use deltalake::arrow::array::RecordBatch;
use deltalake::datafusion::sql::sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Statement,
};
use futures::{stream, Stream, StreamExt};
use pgwire::api::results::{CopyCsvOptions, CopyEncoder, CopyTextOptions, FieldInfo};
use pgwire::error::PgWireResult;
use pgwire::messages::copy::CopyData;

use crate::error::{query_error, sql_error};

/// How the rows are written.
#[derive(Debug, Clone)]
pub(crate) enum CopyFormat {
    Text(CopyTextOptions),
    Csv {
        options: CopyCsvOptions,
        header: bool,
    },
    Binary,
}

impl CopyFormat {
    /// The overall format code of CopyOutResponse (0 text/CSV, 1 binary).
    pub(crate) fn code(&self) -> i8 {
        match self {
            CopyFormat::Binary => 1,
            _ => 0,
        }
    }
}

fn unsupported(what: impl std::fmt::Display) -> pgwire::error::PgWireError {
    sql_error(
        "0A000",
        format!("COPY option {what} is not supported; tidemark supports FORMAT text|csv|binary, DELIMITER, NULL, HEADER, QUOTE, ESCAPE"),
    )
}

fn options(options: &[CopyOption], legacy: &[CopyLegacyOption]) -> PgWireResult<CopyFormat> {
    let (mut format, mut header) = ("text".to_string(), false);
    let (mut delimiter, mut null, mut quote, mut escape) = (None, None, None, None);
    for o in options {
        match o {
            CopyOption::Format(f) => format = f.value.to_ascii_lowercase(),
            CopyOption::Delimiter(c) => delimiter = Some(*c),
            CopyOption::Null(s) => null = Some(s.clone()),
            CopyOption::Header(h) => header = *h,
            CopyOption::Quote(c) => quote = Some(*c),
            CopyOption::Escape(c) => escape = Some(*c),
            CopyOption::Encoding(e)
                if e.eq_ignore_ascii_case("utf8") || e.eq_ignore_ascii_case("utf-8") => {}
            other => return Err(unsupported(other)),
        }
    }
    for o in legacy {
        match o {
            CopyLegacyOption::Binary => format = "binary".into(),
            CopyLegacyOption::Delimiter(c) => delimiter = Some(*c),
            CopyLegacyOption::Null(s) => null = Some(s.clone()),
            CopyLegacyOption::Header => header = true,
            CopyLegacyOption::Csv(csv) => {
                format = "csv".into();
                for c in csv {
                    match c {
                        CopyLegacyCsvOption::Header => header = true,
                        CopyLegacyCsvOption::Quote(q) => quote = Some(*q),
                        CopyLegacyCsvOption::Escape(e) => escape = Some(*e),
                        other => return Err(unsupported(other)),
                    }
                }
            }
            other => return Err(unsupported(other)),
        }
    }
    match format.as_str() {
        "text" => {
            let mut o = CopyTextOptions::default();
            if let Some(d) = delimiter {
                o.delimiter = d.to_string().into();
            }
            if let Some(n) = null {
                o.null_string = n.into();
            }
            Ok(CopyFormat::Text(o))
        }
        "csv" => {
            let mut o = CopyCsvOptions::default();
            if let Some(d) = delimiter {
                o.delimiter = d.to_string().into();
            }
            if let Some(n) = null {
                o.null_string = n.into();
            }
            if let Some(q) = quote {
                o.quote = q.to_string().into();
                // PostgreSQL: ESCAPE defaults to QUOTE.
                o.escape = q.to_string().into();
            }
            if let Some(e) = escape {
                o.escape = e.to_string().into();
            }
            Ok(CopyFormat::Csv { options: o, header })
        }
        "binary" => Ok(CopyFormat::Binary),
        other => Err(sql_error(
            "22023",
            format!("COPY format \"{other}\" not recognized (text, csv or binary)"),
        )),
    }
}

/// The query a `COPY … TO STDOUT` reads and how to write it; `None` for other
/// statements. COPY to a server file or program writes on the server: refused as a
/// write (25006), as `tidemark sql` refuses it.
pub(crate) fn classify(s: &Statement) -> PgWireResult<Option<(Statement, CopyFormat)>> {
    let Statement::Copy {
        source,
        to: true,
        target,
        options: opts,
        legacy_options,
        ..
    } = s
    else {
        return Ok(None);
    };
    if !matches!(target, CopyTarget::Stdout) {
        return Err(crate::utility::refuse_write(
            "COPY TO a server file (psql's \\copy (query) to 'file' writes on the client)",
        ));
    }
    let format = options(opts, legacy_options)?;
    let query = match source {
        CopySource::Query(q) => Statement::Query(q.clone()),
        CopySource::Table {
            table_name,
            columns,
        } => {
            let cols = if columns.is_empty() {
                "*".to_string()
            } else {
                columns
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let sql = format!("SELECT {cols} FROM {table_name}");
            let mut parsed = tidemark_query::parse(&sql).map_err(query_error)?;
            match parsed.pop_front() {
                Some(deltalake::datafusion::sql::parser::Statement::Statement(s)) => *s,
                _ => {
                    return Err(sql_error(
                        "42601",
                        format!("COPY {table_name}: cannot read it"),
                    ))
                }
            }
        }
    };
    Ok(Some((query, format)))
}

/// CSV's header line, quoted where a name needs it.
fn header_line(fields: &[FieldInfo], o: &CopyCsvOptions) -> CopyData {
    let q = o.quote.as_str();
    let line = fields
        .iter()
        .map(|f| {
            let name = f.name();
            if name.contains(o.delimiter.as_str())
                || name.contains(q)
                || name.contains(['\n', '\r'])
            {
                format!("{q}{}{q}", name.replace(q, &format!("{}{q}", o.escape)))
            } else {
                name.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(o.delimiter.as_str());
    CopyData::new(Bytes::from(format!("{line}\n")))
}

fn encoder(fields: Arc<Vec<FieldInfo>>, format: &CopyFormat) -> CopyEncoder {
    match format {
        CopyFormat::Text(o) => CopyEncoder::new_text(fields, o.clone()),
        CopyFormat::Csv { options, .. } => CopyEncoder::new_csv(fields, options.clone()),
        CopyFormat::Binary => CopyEncoder::new_binary(fields),
    }
}

fn encode_batch(
    enc: &mut CopyEncoder,
    fields: &[FieldInfo],
    batch: &RecordBatch,
) -> PgWireResult<Vec<CopyData>> {
    let schema = batch.schema();
    let mut out = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        for (i, column) in batch.columns().iter().enumerate() {
            encode_value(enc, column, row, schema.field(i), &fields[i])?;
        }
        out.push(enc.take_copy());
    }
    Ok(out)
}

/// The rows of `batches` as COPY data, one message per row.
pub(crate) fn rows(
    fields: Arc<Vec<FieldInfo>>,
    format: CopyFormat,
    batches: impl Stream<Item = deltalake::datafusion::error::Result<RecordBatch>> + Send + 'static,
) -> impl Stream<Item = PgWireResult<CopyData>> + Send + 'static {
    let mut enc = encoder(fields.clone(), &format);
    let row_fields = fields.clone();
    batches
        .map(move |batch| {
            let rows = batch
                .map_err(query_error)
                .and_then(|b| encode_batch(&mut enc, &row_fields, &b));
            match rows {
                Ok(r) => stream::iter(r.into_iter().map(Ok).collect::<Vec<_>>()),
                Err(e) => stream::iter(vec![Err(e)]),
            }
        })
        .flatten()
}

/// The header line to send with the rows, if the format has one.
pub(crate) fn header(fields: &[FieldInfo], format: &CopyFormat) -> Option<CopyData> {
    match format {
        CopyFormat::Csv {
            options,
            header: true,
        } => Some(header_line(fields, options)),
        _ => None,
    }
}

/// Send `header` in the same message as the first row: pgwire counts COPY data
/// messages for the `COPY n` tag, and the header is not a row. With no rows the
/// header goes alone (and counts).
pub(crate) fn with_header(
    header: Option<CopyData>,
    rows: impl Stream<Item = PgWireResult<CopyData>> + Send + 'static,
) -> impl Stream<Item = PgWireResult<CopyData>> + Send + 'static {
    let rows = Box::pin(rows);
    stream::unfold(
        (header, rows, false),
        |(header, mut rows, done)| async move {
            if done {
                return None;
            }
            let next = rows.next().await;
            match (header, next) {
                (Some(h), Some(Ok(first))) => {
                    let mut joined = h.data.to_vec();
                    joined.extend_from_slice(&first.data);
                    Some((Ok(CopyData::new(Bytes::from(joined))), (None, rows, false)))
                }
                (Some(h), None) => Some((Ok(h), (None, rows, true))),
                (_, Some(item)) => Some((item, (None, rows, false))),
                (None, None) => None,
            }
        },
    )
}
