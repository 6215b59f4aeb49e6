//! The SQL editor's API: a statement runs as the signed-in user (tidemark-server's
//! [`DirectSession::query`]: their role, the time-travel rewrite, the statement
//! timeout, the audit), and its result reaches the browser a page at a time.
//!
//! * `POST /console/api/queries` `{"id", "sql", "page_rows"}` starts the statement and
//!   answers its first page as soon as that many rows exist: the rest is not computed
//!   yet (DataFusion produces rows as they are pulled).
//! * `POST /console/api/queries/{id}/next` answers the next page from the same
//!   running statement (a cursor held here, per session, at most [`MAX_CURSORS`] of
//!   them, closed after [`CURSOR_IDLE`] unused). The page keeps only the page it
//!   shows: a result is never in the browser whole.
//! * `DELETE /console/api/queries/{id}` cancels: a statement still planning or
//!   producing a page stops (its task is aborted, the scan dropped), an open cursor
//!   closes. The id is the page's own (random), so a cancel can be sent before the
//!   first page has come back.
//! * `POST /console/api/csv` (a form, with the CSRF token) streams the whole result
//!   as CSV to a file download, batch by batch, without holding it.
//!
//! The audit records a console statement when its rows end, fail, or are dropped
//! unread (outcome `cancelled`, with the rows read), as for a SQL client that went
//! away mid-result.
//!
//! [`DirectSession::query`]: tidemark_server::direct::DirectSession::query

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::{Array, RecordBatch};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tidemark_server::direct::Rows;
use tokio_util::sync::CancellationToken;

use crate::auth::{check_form, Reader, Writer};
use crate::{Console, ConsoleError};

/// Rows per page unless the page asks for another size.
pub const PAGE_ROWS: usize = 100;
/// The most rows one page may ask for.
pub const MAX_PAGE_ROWS: usize = 1000;
/// Open results per session; opening another closes the least recently used.
pub const MAX_CURSORS: usize = 4;
/// An open result unused this long is closed.
pub const CURSOR_IDLE: Duration = Duration::from_secs(10 * 60);
/// Longer cell values are cut (with `…`) in pages; the CSV download has them whole.
pub const MAX_CELL_CHARS: usize = 10_000;

/// A running statement, read a page at a time.
pub struct Cursor {
    rows: Rows,
    /// Rows of a batch that did not fit in the last page.
    pending: Option<RecordBatch>,
    /// Rows answered so far.
    sent: usize,
    done: bool,
}

/// One page of a result.
#[derive(Debug, Serialize)]
pub struct Page {
    id: String,
    columns: Vec<ColumnInfo>,
    /// Cell values as text; `null` for SQL NULL.
    rows: Vec<Vec<Option<String>>>,
    /// The position of the page's first row in the result.
    offset: usize,
    /// No rows follow.
    done: bool,
    elapsed_ms: u64,
}

#[derive(Debug, Serialize)]
struct ColumnInfo {
    name: String,
    r#type: String,
}

pub(crate) fn text_rows(
    batch: &RecordBatch,
    out: &mut Vec<Vec<Option<String>>>,
) -> Result<(), ConsoleError> {
    let options = FormatOptions::default();
    let formatters = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ConsoleError::Internal(format!("formatting a result: {e}")))?;
    for row in 0..batch.num_rows() {
        out.push(
            batch
                .columns()
                .iter()
                .zip(&formatters)
                .map(|(c, f)| {
                    (!c.is_null(row)).then(|| {
                        let mut v = f.value(row).to_string();
                        if v.len() > MAX_CELL_CHARS {
                            let mut cut = MAX_CELL_CHARS;
                            while !v.is_char_boundary(cut) {
                                cut -= 1;
                            }
                            v.truncate(cut);
                            v.push('…');
                        }
                        v
                    })
                })
                .collect(),
        );
    }
    Ok(())
}

impl Cursor {
    fn new(rows: Rows) -> Self {
        Self {
            rows,
            pending: None,
            sent: 0,
            done: false,
        }
    }

    /// The next `n` rows (fewer at the end), pulling only the batches they need.
    async fn page(&mut self, id: &str, n: usize) -> Result<Page, ConsoleError> {
        let started = Instant::now();
        let mut rows = Vec::with_capacity(n.min(MAX_PAGE_ROWS));
        while rows.len() < n && !self.done {
            let batch = match self.pending.take() {
                Some(b) => b,
                None => match self.rows.next().await {
                    Some(Ok(b)) => b,
                    Some(Err(e)) => {
                        self.done = true;
                        return Err(e.into());
                    }
                    None => {
                        self.done = true;
                        break;
                    }
                },
            };
            let take = (n - rows.len()).min(batch.num_rows());
            text_rows(&batch.slice(0, take), &mut rows)?;
            if take < batch.num_rows() {
                self.pending = Some(batch.slice(take, batch.num_rows() - take));
            }
        }
        let offset = self.sent;
        self.sent += rows.len();
        let schema = self.rows.schema();
        Ok(Page {
            id: id.to_string(),
            columns: schema
                .fields()
                .iter()
                .map(|f| ColumnInfo {
                    name: f.name().clone(),
                    r#type: f.data_type().to_string(),
                })
                .collect(),
            rows,
            offset,
            done: self.done,
            elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        })
    }
}

/// A statement of the session: running (its first page not answered yet), or open
/// for further pages.
struct Slot {
    cancel: CancellationToken,
    cursor: Option<Arc<tokio::sync::Mutex<Cursor>>>,
    last_used: Instant,
}

/// One session's statements, by the page's id for them.
#[derive(Default)]
pub struct Cursors {
    slots: Mutex<HashMap<String, Slot>>,
}

impl Cursors {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Register a new statement; closes idle ones, and the least recently used
    /// beyond [`MAX_CURSORS`].
    fn begin(&self, id: &str) -> Result<CancellationToken, ConsoleError> {
        let mut slots = self.lock();
        if slots.contains_key(id) {
            return Err(ConsoleError::BadRequest(format!(
                "a query with id {id} is already open"
            )));
        }
        let now = Instant::now();
        slots.retain(|_, s| {
            let keep = now.duration_since(s.last_used) < CURSOR_IDLE;
            if !keep {
                s.cancel.cancel();
            }
            keep
        });
        while slots.len() >= MAX_CURSORS {
            let Some(oldest) = slots
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(s) = slots.remove(&oldest) {
                s.cancel.cancel();
            }
        }
        let cancel = CancellationToken::new();
        slots.insert(
            id.to_string(),
            Slot {
                cancel: cancel.clone(),
                cursor: None,
                last_used: now,
            },
        );
        Ok(cancel)
    }

    /// Keep a statement open for further pages, unless it was cancelled meanwhile.
    fn keep(&self, id: &str, cursor: Cursor) {
        if let Some(slot) = self.lock().get_mut(id) {
            slot.cursor = Some(Arc::new(tokio::sync::Mutex::new(cursor)));
            slot.last_used = Instant::now();
        }
    }

    fn get(
        &self,
        id: &str,
    ) -> Result<(CancellationToken, Arc<tokio::sync::Mutex<Cursor>>), ConsoleError> {
        let mut slots = self.lock();
        let gone = || {
            ConsoleError::NotFound(format!(
                "query {id} is not open (it finished, was cancelled, or was closed after {} minutes unused): run it again",
                CURSOR_IDLE.as_secs() / 60
            ))
        };
        let slot = slots.get_mut(id).ok_or_else(gone)?;
        slot.last_used = Instant::now();
        let cursor = slot.cursor.clone().ok_or_else(|| {
            ConsoleError::BadRequest(format!("query {id} has not answered its first page yet"))
        })?;
        Ok((slot.cancel.clone(), cursor))
    }

    /// Close a statement: stop it if running, drop its result.
    fn close(&self, id: &str) -> bool {
        match self.lock().remove(id) {
            Some(s) => {
                s.cancel.cancel();
                true
            }
            None => false,
        }
    }

    /// Close every statement (sign-out).
    pub(crate) fn close_all(&self) {
        for (_, s) in self.lock().drain() {
            s.cancel.cancel();
        }
    }
}

fn check_id(id: &str) -> Result<(), ConsoleError> {
    let ok = (8..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ConsoleError::BadRequest(
            "a query id is 8 to 64 letters, digits, '-' or '_'".into(),
        ))
    }
}

fn page_rows(asked: Option<usize>) -> usize {
    asked.unwrap_or(PAGE_ROWS).clamp(1, MAX_PAGE_ROWS)
}

fn cancelled() -> ConsoleError {
    ConsoleError::Query(tidemark_server::direct::QueryError {
        sqlstate: "57014".into(),
        message: "canceling statement due to user request".into(),
        fatal: false,
    })
}

/// Starting a statement.
#[derive(Deserialize)]
pub struct Start {
    id: String,
    sql: String,
    page_rows: Option<usize>,
    /// The editor's "as of" (`2026-10-24T00:00:00.000Z`): the statement's landed
    /// tables are read as of it (see `DirectSession::query_as_of`).
    as_of: Option<String>,
}

/// `POST /console/api/queries`: run a statement, answer its first page.
pub(crate) async fn start(
    State(console): State<Console>,
    w: Writer,
    Json(body): Json<Start>,
) -> Result<Json<Page>, ConsoleError> {
    check_id(&body.id)?;
    let signed = w.signed;
    let cancel = signed.cursors.begin(&body.id)?;
    let n = page_rows(body.page_rows);
    let (session, id, sql, as_of) = (signed.clone(), body.id.clone(), body.sql, body.as_of);
    let work = async move {
        let rows = session.direct.query_as_of(&sql, as_of.as_deref()).await?;
        let mut cursor = Cursor::new(rows);
        let page = cursor.page(&id, n).await?;
        Ok::<_, ConsoleError>((cursor, page))
    };
    let outcome = tokio::select! {
        r = console.exec(work) => r,
        _ = cancel.cancelled() => Err(cancelled()),
    };
    match outcome.and_then(|r| r) {
        Ok((cursor, page)) => {
            if page.done {
                signed.cursors.close(&body.id);
            } else {
                signed.cursors.keep(&body.id, cursor);
            }
            Ok(Json(page))
        }
        Err(e) => {
            signed.cursors.close(&body.id);
            Err(e)
        }
    }
}

/// Asking for another page.
#[derive(Deserialize)]
pub struct Next {
    page_rows: Option<usize>,
}

/// `POST /console/api/queries/{id}/next`: the next page of an open statement.
pub(crate) async fn next(
    State(console): State<Console>,
    w: Writer,
    Path(id): Path<String>,
    Json(body): Json<Next>,
) -> Result<Json<Page>, ConsoleError> {
    let signed = w.signed;
    let (cancel, cursor) = signed.cursors.get(&id)?;
    let n = page_rows(body.page_rows);
    let page_id = id.clone();
    let work = async move { cursor.lock().await.page(&page_id, n).await };
    let outcome = tokio::select! {
        r = console.exec(work) => r,
        _ = cancel.cancelled() => Err(cancelled()),
    };
    match outcome.and_then(|r| r) {
        Ok(page) => {
            if page.done {
                signed.cursors.close(&id);
            }
            Ok(Json(page))
        }
        Err(e) => {
            signed.cursors.close(&id);
            Err(e)
        }
    }
}

/// `DELETE /console/api/queries/{id}`: cancel a running statement or close its
/// result.
pub(crate) async fn close(w: Writer, Path(id): Path<String>) -> Json<serde_json::Value> {
    let closed = w.signed.cursors.close(&id);
    Json(serde_json::json!({ "closed": closed }))
}

/// The CSV download form.
#[derive(Deserialize)]
pub struct CsvForm {
    sql: String,
    csrf: String,
    /// As in [`Start`]; empty: now.
    #[serde(default)]
    as_of: String,
}

fn csv_chunk(batch: &RecordBatch, header: bool) -> Result<Bytes, std::io::Error> {
    let mut w = arrow::csv::WriterBuilder::new()
        .with_header(header)
        .build(Vec::new());
    w.write(batch).map_err(std::io::Error::other)?;
    Ok(Bytes::from(w.into_inner()))
}

/// `POST /console/api/csv`: the whole result as a CSV file, streamed as it is
/// produced (a form post, so the browser writes it to disk, not into the page).
pub(crate) async fn csv(
    State(console): State<Console>,
    Reader(signed): Reader,
    headers: HeaderMap,
    Form(form): Form<CsvForm>,
) -> Result<Response, ConsoleError> {
    check_form(&headers, &signed, &form.csrf)?;
    let session = signed.clone();
    let sql = form.sql;
    let as_of = Some(form.as_of).filter(|t| !t.is_empty());
    let mut rows = console
        .exec(async move { session.direct.query_as_of(&sql, as_of.as_deref()).await })
        .await??;
    let first = csv_chunk(&RecordBatch::new_empty(rows.schema()), true)
        .map_err(|e| ConsoleError::Internal(format!("CSV: {e}")))?;
    // The rows are pulled on the query runtime and handed over through a small
    // channel: a slow download slows the query, and a closed one stops it.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let pump = async move {
        if tx.send(Ok(first)).await.is_err() {
            return;
        }
        while let Some(batch) = rows.next().await {
            let chunk = match batch {
                Ok(b) => csv_chunk(&b, false),
                Err(e) => Err(std::io::Error::other(e.to_string())),
            };
            let failed = chunk.is_err();
            if tx.send(chunk).await.is_err() || failed {
                return;
            }
        }
    };
    match &console.inner.options.runtime {
        Some(rt) => drop(rt.spawn(pump)),
        None => drop(tokio::spawn(pump)),
    }
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"tidemark-result.csv\"",
            ),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert!(check_id("q-1a2b3c4d").is_ok());
        assert!(check_id("short").is_err());
        assert!(check_id("../../../etc").is_err());
        assert!(check_id(&"a".repeat(65)).is_err());
    }

    #[test]
    fn page_sizes_are_bounded() {
        assert_eq!(page_rows(None), PAGE_ROWS);
        assert_eq!(page_rows(Some(0)), 1);
        assert_eq!(page_rows(Some(1_000_000)), MAX_PAGE_ROWS);
    }

    #[test]
    fn long_cells_are_cut_and_nulls_stay_null() {
        use arrow::array::StringArray;
        let long = "é".repeat(MAX_CELL_CHARS);
        let a = StringArray::from(vec![Some("<b>x</b>"), None, Some(long.as_str())]);
        let batch = RecordBatch::try_from_iter([("v", Arc::new(a) as _)]).unwrap();
        let mut out = Vec::new();
        text_rows(&batch, &mut out).unwrap();
        assert_eq!(out[0][0].as_deref(), Some("<b>x</b>"));
        assert_eq!(out[1][0], None);
        let cut = out[2][0].as_deref().unwrap();
        assert!(cut.ends_with('…') && cut.len() <= MAX_CELL_CHARS + '…'.len_utf8());
    }
}
