//! The audit trail: every statement, with user, time, duration, rows and outcome,
//! logged at once (target `tidemark::audit`) and committed to `tidemark.audit` in
//! batches by one background task, so a query never waits for a Delta commit.
//!
//! `tidemark.audit` is registered in schema `tidemark`, which only admin roles see
//! (see [`crate::access`]); it is read at its latest version on every scan, so an
//! admin sees statements up to the last flush.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use deltalake::datafusion::prelude::SessionContext;
use futures::Stream;
use pgwire::error::{PgWireError, PgWireResult};
use tidemark_lake::{Audit, AuditRecord, Warehouse, AUDIT, OWN_SCHEMA};
use tidemark_query::Engine;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use crate::{Error, Result};

/// Records kept while the table cannot be written; past this the oldest go (they
/// were logged when they happened).
const MAX_PENDING: usize = 100_000;

enum Msg {
    Record(Box<AuditRecord>),
    Close(oneshot::Sender<()>),
}

/// Where statements are recorded. Cheap to clone.
#[derive(Clone)]
pub(crate) struct AuditLog {
    tx: mpsc::UnboundedSender<Msg>,
}

impl AuditLog {
    /// Open (or create) `tidemark.audit`, register it in `base`'s catalog and start
    /// the task that commits records every `flush`.
    pub(crate) async fn start(
        wh: &Warehouse,
        engine: &Engine,
        base: &SessionContext,
        flush: Duration,
    ) -> Result<Self> {
        let setup = |e: String| Error::Session(format!("{OWN_SCHEMA}.{AUDIT}: {e}"));
        let audit = Audit::open(wh).await.map_err(|e| setup(e.to_string()))?;
        let table = audit.table().clone();
        table
            .update_datafusion_session(&base.state())
            .map_err(|e| setup(e.to_string()))?;
        let latest = tidemark_query::Latest::new(&table)
            .await
            .map_err(|e| setup(e.to_string()))?;
        engine
            .register_own(AUDIT, Arc::new(latest))
            .map_err(|e| setup(e.to_string()))?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(writer(audit, rx, flush));
        Ok(Self { tx })
    }

    fn record(&self, r: AuditRecord) {
        info!(
            target: "tidemark::audit",
            user = %r.user,
            role = %r.role,
            client = %r.client,
            outcome = %r.outcome,
            rows = r.rows,
            duration_ms = r.duration_us as f64 / 1000.0,
            sqlstate = r.sqlstate.as_deref().unwrap_or(""),
            statement = %r.statement,
            "statement"
        );
        // The writer ends only after Close, which comes last.
        let _ = self.tx.send(Msg::Record(Box::new(r)));
    }

    /// Commit what is pending and stop the writer (waits at most 10 s).
    pub(crate) async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Close(tx)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(10), rx).await;
        }
    }
}

async fn writer(mut audit: Audit, mut rx: mpsc::UnboundedReceiver<Msg>, flush: Duration) {
    let mut pending: Vec<AuditRecord> = Vec::new();
    let mut tick = tokio::time::interval(flush);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            m = rx.recv() => match m {
                Some(Msg::Record(r)) => {
                    if pending.len() >= MAX_PENDING {
                        pending.remove(0);
                        warn!(target: "tidemark::audit", "audit records pile up unwritten; the oldest is dropped from tidemark.audit (it is in the log)");
                    }
                    pending.push(*r);
                }
                Some(Msg::Close(done)) => {
                    commit(&mut audit, &mut pending).await;
                    let _ = done.send(());
                    return;
                }
                None => {
                    commit(&mut audit, &mut pending).await;
                    return;
                }
            },
            _ = tick.tick() => commit(&mut audit, &mut pending).await,
        }
    }
}

async fn commit(audit: &mut Audit, pending: &mut Vec<AuditRecord>) {
    if pending.is_empty() {
        return;
    }
    match audit.append(pending).await {
        Ok(()) => pending.clear(),
        // Kept and retried at the next flush.
        Err(e) => {
            warn!(target: "tidemark::audit", error = %e, records = pending.len(), "cannot write tidemark.audit; retrying")
        }
    }
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// A statement being answered; recorded once, when it ends.
pub(crate) struct Entry {
    log: AuditLog,
    started: tokio::time::Instant,
    record: AuditRecord,
}

impl Entry {
    pub(crate) fn begin(log: &AuditLog, who: &crate::session::Session, statement: &str) -> Self {
        Self {
            log: log.clone(),
            started: tokio::time::Instant::now(),
            record: AuditRecord {
                started_us: now_us(),
                user: who.user.clone(),
                role: who.role.clone(),
                client: who.client.clone(),
                application: who
                    .get("application_name")
                    .map(|(_, v)| v)
                    .unwrap_or_default(),
                statement: statement.to_string(),
                duration_us: 0,
                rows: None,
                outcome: String::new(),
                sqlstate: None,
                error: None,
            },
        }
    }

    pub(crate) fn finish(mut self, outcome: &str, rows: Option<i64>, error: Option<&PgWireError>) {
        self.record.duration_us =
            i64::try_from(self.started.elapsed().as_micros()).unwrap_or(i64::MAX);
        self.record.rows = rows;
        self.record.outcome = outcome.to_string();
        if let Some(e) = error {
            let (code, message) = match e {
                PgWireError::UserError(info) => (info.code.clone(), info.message.clone()),
                other => ("XX000".to_string(), other.to_string()),
            };
            self.record.outcome = match code.as_str() {
                "42501" => "denied",
                "57014" if message.contains("user request") => "cancelled",
                "57014" => "timeout",
                _ => outcome,
            }
            .to_string();
            self.record.sqlstate = Some(code);
            self.record.error = Some(message);
        }
        let log = self.log.clone();
        log.record(self.record);
    }

    /// A statement without rows (SET, SHOW, BEGIN) answered.
    pub(crate) fn ok(self) {
        self.finish("ok", None, None);
    }

    /// A statement that failed before any row.
    pub(crate) fn failed(self, e: &PgWireError) {
        self.finish("error", None, Some(e));
    }

    /// Follow a row stream: recorded with its row count when it ends, fails, or is
    /// dropped unfinished (the client went away or cancelled).
    pub(crate) fn rows<S, T>(self, inner: S) -> Audited<S>
    where
        S: Stream<Item = PgWireResult<T>>,
    {
        Audited {
            inner: Box::pin(inner),
            entry: Some(self),
            rows: 0,
        }
    }
}

/// A row stream that records its statement when it ends.
pub(crate) struct Audited<S> {
    inner: Pin<Box<S>>,
    entry: Option<Entry>,
    rows: i64,
}

impl<S, T> Stream for Audited<S>
where
    S: Stream<Item = PgWireResult<T>>,
{
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let next = this.inner.as_mut().poll_next(cx);
        match &next {
            Poll::Ready(Some(Ok(_))) => this.rows += 1,
            Poll::Ready(Some(Err(e))) => {
                if let Some(entry) = this.entry.take() {
                    entry.finish("error", Some(this.rows), Some(e));
                }
            }
            Poll::Ready(None) => {
                if let Some(entry) = this.entry.take() {
                    entry.finish("ok", Some(this.rows), None);
                }
            }
            Poll::Pending => {}
        }
        next
    }
}

impl<S> Drop for Audited<S> {
    fn drop(&mut self) {
        if let Some(entry) = self.entry.take() {
            entry.finish("cancelled", Some(self.rows), None);
        }
    }
}
