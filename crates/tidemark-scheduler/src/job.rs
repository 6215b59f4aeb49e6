//! What a job is to the scheduler: something that runs and reports rows or an error.
//! Job kinds (SQL, models, publish, maintenance, ...) live elsewhere and register here.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::spec::{ConfigError, JobSpec};

/// One runnable job, built from its spec by its kind.
pub trait Job: Send + Sync + 'static {
    fn run(&self, cx: RunContext) -> BoxFuture<'static, Result<RunOutput, JobError>>;
}

/// A family of jobs (`kind = "sql"`), turning a spec's `params` into a [`Job`].
pub trait JobKind: Send + Sync + 'static {
    fn kind(&self) -> &'static str;
    fn build(&self, spec: &JobSpec) -> Result<Arc<dyn Job>, ConfigError>;
}

/// The job kinds this daemon knows.
#[derive(Clone, Default)]
pub struct Registry {
    kinds: BTreeMap<&'static str, Arc<dyn JobKind>>,
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Registers a kind; a later registration of the same name replaces the earlier one.
    pub fn register(&mut self, kind: Arc<dyn JobKind>) -> &mut Registry {
        self.kinds.insert(kind.kind(), kind);
        self
    }

    pub fn get(&self, kind: &str) -> Option<&Arc<dyn JobKind>> {
        self.kinds.get(kind)
    }

    pub fn kinds(&self) -> Vec<&'static str> {
        self.kinds.keys().copied().collect()
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("kinds", &self.kinds())
            .finish()
    }
}

/// Why a run started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reason {
    Cron {
        tick: DateTime<Utc>,
    },
    /// A tick missed while no daemon was running (`catch_up = "once"`).
    CatchUp {
        tick: DateTime<Utc>,
    },
    Every {
        tick: DateTime<Utc>,
    },
    NewData,
    After {
        job: String,
    },
    Manual {
        by: String,
    },
}

impl Reason {
    pub fn tick(&self) -> Option<DateTime<Utc>> {
        match self {
            Reason::Cron { tick } | Reason::CatchUp { tick } | Reason::Every { tick } => {
                Some(*tick)
            }
            _ => None,
        }
    }

    /// Rebuilds a reason from a run record's `reason` string and `tick`.
    pub fn from_record(reason: &str, tick: Option<DateTime<Utc>>) -> Option<Reason> {
        let (head, rest) = match reason.split_once(':') {
            Some((h, r)) => (h, Some(r)),
            None => (reason, None),
        };
        Some(match (head, rest, tick) {
            ("cron", None, Some(tick)) => Reason::Cron { tick },
            ("catch_up", None, Some(tick)) => Reason::CatchUp { tick },
            ("every", None, Some(tick)) => Reason::Every { tick },
            ("new_data", None, _) => Reason::NewData,
            ("after", Some(job), _) => Reason::After { job: job.into() },
            ("manual", Some(by), _) => Reason::Manual { by: by.into() },
            _ => return None,
        })
    }
}

/// The short form kept in [`crate::store::RunRecord::reason`]: `cron`, `catch_up`,
/// `every`, `new_data`, `after:JOB`, `manual:WHO` (the tick is a field of its own).
impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Cron { .. } => f.write_str("cron"),
            Reason::CatchUp { .. } => f.write_str("catch_up"),
            Reason::Every { .. } => f.write_str("every"),
            Reason::NewData => f.write_str("new_data"),
            Reason::After { job } => write!(f, "after:{job}"),
            Reason::Manual { by } => write!(f, "manual:{by}"),
        }
    }
}

/// What a run gets to know.
#[derive(Debug, Clone)]
pub struct RunContext {
    pub run_id: String,
    pub job: String,
    pub reason: Reason,
    /// Versions of the job's `new_data` inputs read when the run was claimed; the
    /// run should consume up to these (later commits trigger the next run).
    pub inputs: BTreeMap<String, i64>,
    /// Parameters of a manual trigger.
    pub params: BTreeMap<String, String>,
    /// Cancelled when the daemon stops, the job is removed, or the run lost its lease.
    pub cancel: CancellationToken,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunOutput {
    pub rows: u64,
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// Worth retrying (network, throttling, a concurrent commit).
    #[error("{0}")]
    Transient(String),
    /// Retrying cannot help; someone has to act first.
    #[error("{message}; {action}")]
    Definite { message: String, action: String },
}
