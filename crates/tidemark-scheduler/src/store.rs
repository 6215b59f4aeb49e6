//! The durable record of runs (`tidemark.runs`). Triggers are consumed by claiming a
//! run: the claim is a conditional create of `(job, seq)` that carries the tick and
//! the input versions, so whoever wins the claim owns that trigger, in any process.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use futures::FutureExt;
use serde::{Deserialize, Serialize};

/// Error text of a run whose holder vanished.
pub const ABANDONED_ERROR: &str = "the process running it stopped (killed or crashed) before it ended; its output was not committed or was committed exactly once by its own transaction; the next trigger runs it again";

/// Error text of a run cancelled because its daemon was stopping or its job removed.
pub const CANCELLED_ERROR: &str = "cancelled before it ended (the daemon was stopping, the job was removed, or its lease was lost); the next trigger runs it again";

/// The tail of a definite failure's error; a job whose latest run ended with it is
/// paused until someone acts (this text is how the pause survives restarts).
pub(crate) const PAUSE_MARKER: &str = "then trigger the job by hand (tidemark jobs run ";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Running,
    Succeeded,
    Failed,
    Abandoned,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// `"{job}-{seq}"`.
    pub id: String,
    pub job: String,
    pub seq: u64,
    /// [`crate::Reason`] in its short form.
    pub reason: String,
    /// The cron/every tick this run serves.
    pub tick: Option<DateTime<Utc>>,
    /// Input versions read at claim time: the new-data cursor.
    pub inputs: BTreeMap<String, i64>,
    pub params: BTreeMap<String, String>,
    /// The daemon running it.
    pub holder: String,
    pub started: DateTime<Utc>,
    pub ended: Option<DateTime<Utc>>,
    pub lease_until: DateTime<Utc>,
    pub outcome: Outcome,
    pub attempts: u32,
    pub rows: u64,
    pub error: Option<String>,
}

impl RunRecord {
    pub fn run_id(job: &str, seq: u64) -> String {
        format!("{job}-{seq}")
    }

    /// Whether this run failed in a way that pauses its job.
    pub fn pauses_job(&self) -> bool {
        self.outcome == Outcome::Failed
            && self
                .error
                .as_deref()
                .is_some_and(|e| e.contains(PAUSE_MARKER))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The run is no longer held by this daemon (another one declared it abandoned).
    #[error("run {0} is not held by this daemon any more")]
    NotHeld(String),
    #[error("run {0} does not exist")]
    NoSuchRun(String),
    #[error("{0}")]
    Other(String),
}

/// Durable run records. Implementations must make `claim` atomic across processes.
pub trait RunStore: Send + Sync + 'static {
    /// The latest state of every run; at least, per job, enough recent runs to hold
    /// its newest run, newest served tick, newest non-abandoned claim and newest success.
    fn load(&self) -> BoxFuture<'static, Result<Vec<RunRecord>, StoreError>>;
    /// Creates run `(record.job, record.seq)`; `Ok(false)` if it already exists.
    fn claim(&self, record: RunRecord) -> BoxFuture<'static, Result<bool, StoreError>>;
    /// Extends a running run's lease; [`StoreError::NotHeld`] if it is no longer
    /// running under `holder`.
    fn renew(
        &self,
        job: &str,
        seq: u64,
        holder: &str,
        lease_until: DateTime<Utc>,
    ) -> BoxFuture<'static, Result<(), StoreError>>;
    /// Writes a run's final state.
    fn finish(&self, record: RunRecord) -> BoxFuture<'static, Result<(), StoreError>>;
    /// Marks a still-running run as abandoned (its holder is gone).
    fn abandon(&self, job: &str, seq: u64) -> BoxFuture<'static, Result<(), StoreError>>;
}

/// In-memory store; clones share their runs, so two schedulers on clones behave like
/// two daemons on one warehouse.
#[derive(Debug, Clone, Default)]
pub struct MemoryRunStore {
    runs: Arc<Mutex<BTreeMap<(String, u64), RunRecord>>>,
}

impl MemoryRunStore {
    pub fn new() -> MemoryRunStore {
        MemoryRunStore::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<(String, u64), RunRecord>> {
        self.runs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every record, ordered by job then seq.
    pub fn records(&self) -> Vec<RunRecord> {
        self.lock().values().cloned().collect()
    }

    /// Writes a record as is, e.g. to simulate a daemon that died mid-run.
    pub fn insert(&self, record: RunRecord) {
        self.lock().insert((record.job.clone(), record.seq), record);
    }
}

fn ready<T: Send + 'static>(v: T) -> BoxFuture<'static, T> {
    futures::future::ready(v).boxed()
}

impl RunStore for MemoryRunStore {
    fn load(&self) -> BoxFuture<'static, Result<Vec<RunRecord>, StoreError>> {
        ready(Ok(self.records()))
    }

    fn claim(&self, record: RunRecord) -> BoxFuture<'static, Result<bool, StoreError>> {
        let mut runs = self.lock();
        let key = (record.job.clone(), record.seq);
        if runs.contains_key(&key) {
            return ready(Ok(false));
        }
        runs.insert(key, record);
        ready(Ok(true))
    }

    fn renew(
        &self,
        job: &str,
        seq: u64,
        holder: &str,
        lease_until: DateTime<Utc>,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let mut runs = self.lock();
        let id = RunRecord::run_id(job, seq);
        let result = match runs.get_mut(&(job.to_string(), seq)) {
            Some(r) if r.outcome == Outcome::Running && r.holder == holder => {
                r.lease_until = lease_until;
                Ok(())
            }
            Some(_) => Err(StoreError::NotHeld(id)),
            None => Err(StoreError::NoSuchRun(id)),
        };
        ready(result)
    }

    fn finish(&self, record: RunRecord) -> BoxFuture<'static, Result<(), StoreError>> {
        self.insert(record);
        ready(Ok(()))
    }

    fn abandon(&self, job: &str, seq: u64) -> BoxFuture<'static, Result<(), StoreError>> {
        let mut runs = self.lock();
        let result = match runs.get_mut(&(job.to_string(), seq)) {
            Some(r) => {
                if r.outcome == Outcome::Running {
                    r.outcome = Outcome::Abandoned;
                    r.ended = Some(r.lease_until);
                    r.error = Some(ABANDONED_ERROR.to_string());
                }
                Ok(())
            }
            None => Err(StoreError::NoSuchRun(RunRecord::run_id(job, seq))),
        };
        ready(result)
    }
}
