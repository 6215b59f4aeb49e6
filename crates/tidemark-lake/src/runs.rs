//! Where the daemon keeps its jobs' runs.
//!
//! Two places, for two readers:
//!
//! * **Claims** ([`RunClaims`]): one small JSON object per run at
//!   `<warehouse>/.tidemark/runs/<job>/<seq>.json`, created with a conditional put
//!   (`PutMode::Create`: put-if-absent, as Delta commits are made on S3). Whoever
//!   creates run `seq` of a job owns it; a second daemon on the same warehouse that
//!   computed the same `seq` is refused and re-reads. The claim holds the run's
//!   trigger cursor (the cron tick it serves, the input versions it consumes), so a
//!   trigger is consumed exactly when its run is claimed. The owner overwrites its
//!   own claim to renew its lease and to record the outcome. The directory starts
//!   with `.`, so it is never mistaken for a schema of tables.
//! * **`tidemark.runs`** ([`record_runs`]): one row per ended run, a plain Delta
//!   table for SQL readers (admins): job, trigger, inputs' versions, start, end,
//!   outcome, rows, error.

use std::sync::Arc;

use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::DeltaTable;
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions};

use crate::own::{self, OWN_SCHEMA};
use crate::warehouse::Warehouse;
use crate::{Error, Result};

/// SQL name of the table in [`OWN_SCHEMA`].
pub const RUNS: &str = "runs";

/// The claim files of a warehouse's job runs.
#[derive(Clone)]
pub struct RunClaims {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    location: String,
}

impl std::fmt::Debug for RunClaims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunClaims")
            .field("location", &self.location)
            .finish()
    }
}

impl RunClaims {
    /// The claims of `wh` (a local directory or an object store).
    pub fn open(wh: &Warehouse) -> Result<Self> {
        let (store, prefix) = wh.own_files("runs")?;
        Ok(Self {
            store,
            prefix,
            location: wh.root().to_string(),
        })
    }

    fn path(&self, job: &str, seq: u64) -> ObjectPath {
        // Zero-padded so that names sort as numbers.
        self.prefix
            .clone()
            .join(job)
            .join(format!("{seq:012}.json"))
    }

    fn err(&self, what: &str, e: impl std::fmt::Display) -> Error {
        Error::Warehouse {
            location: self.location.clone(),
            message: format!("{what}: {e}"),
        }
    }

    /// Create run `seq` of `job` with `body`, unless it exists: `false` when another
    /// claim got there first.
    pub async fn create(&self, job: &str, seq: u64, body: Vec<u8>) -> Result<bool> {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .store
            .put_opts(&self.path(job, seq), body.into(), opts)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(self.err(&format!("claiming run {seq} of job {job}"), e)),
        }
    }

    /// Replace run `seq` of `job` (its owner renewing its lease or recording its end).
    pub async fn overwrite(&self, job: &str, seq: u64, body: Vec<u8>) -> Result<()> {
        self.store
            .put(&self.path(job, seq), body.into())
            .await
            .map(|_| ())
            .map_err(|e| self.err(&format!("updating run {seq} of job {job}"), e))
    }

    /// Run `seq` of `job` as stored now, if it exists.
    pub async fn read(&self, job: &str, seq: u64) -> Result<Option<Vec<u8>>> {
        let got = match self.store.get(&self.path(job, seq)).await {
            Ok(g) => g.bytes().await,
            Err(e) => Err(e),
        };
        match got {
            Ok(b) => Ok(Some(b.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err(&format!("reading run {seq} of job {job}"), e)),
        }
    }

    /// The newest `per_job` claims of every job: (job, seq, body), by job then seq.
    pub async fn list(&self, per_job: usize) -> Result<Vec<(String, u64, Vec<u8>)>> {
        let jobs = self
            .store
            .list_with_delimiter(Some(&self.prefix))
            .await
            .map_err(|e| self.err("listing job runs", e))?;
        let mut out = Vec::new();
        for dir in jobs.common_prefixes {
            let Some(job) = dir.filename().map(str::to_string) else {
                continue;
            };
            let mut seqs: Vec<(u64, ObjectPath)> = self
                .store
                .list(Some(&dir))
                .map_ok(|m| m.location)
                .try_collect::<Vec<_>>()
                .await
                .map_err(|e| self.err(&format!("listing runs of job {job}"), e))?
                .into_iter()
                .filter_map(|p| {
                    let name = p.filename()?.strip_suffix(".json")?.parse().ok()?;
                    Some((name, p))
                })
                .collect();
            seqs.sort_by_key(|(s, _)| *s);
            let skip = seqs.len().saturating_sub(per_job);
            for (seq, path) in seqs.into_iter().skip(skip) {
                let body = match self.store.get(&path).await {
                    Ok(g) => g.bytes().await,
                    Err(e) => Err(e),
                };
                match body {
                    Ok(b) => out.push((job.clone(), seq, b.to_vec())),
                    // Claimed and gone (a warehouse being cleaned): nothing to read.
                    Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(self.err(&format!("reading run {seq} of {job}"), e)),
                }
            }
        }
        Ok(out)
    }
}

/// One ended run, as `tidemark.runs` holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunRow {
    /// `<job>-<seq>`.
    pub run_id: String,
    /// The job's name.
    pub job: String,
    /// What triggered it (`cron`, `catch_up`, `every`, `new_data`, `after`, `manual`).
    pub reason: String,
    /// The input tables' Delta versions it consumed, JSON (`{"db.t": 12}`).
    pub inputs: String,
    /// Start and end (µs, UTC).
    pub started_us: i64,
    /// See `started_us`.
    pub ended_us: Option<i64>,
    /// `succeeded`, `failed` or `abandoned`.
    pub outcome: String,
    /// Rows the run wrote.
    pub rows: i64,
    /// Tries it took.
    pub attempts: i64,
    /// Why it failed, and what to do.
    pub error: Option<String>,
    /// The daemon that ran it.
    pub holder: String,
}

fn schema() -> SchemaRef {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let s = |n: &str, null| Field::new(n, DataType::Utf8, null);
    let i = |n: &str| Field::new(n, DataType::Int64, false);
    Arc::new(Schema::new(vec![
        s("run_id", false),
        s("job", false),
        s("reason", false),
        s("inputs", false),
        Field::new("started_at", ts.clone(), false),
        Field::new("ended_at", ts, true),
        s("outcome", false),
        i("rows"),
        i("attempts"),
        s("error", true),
        s("holder", false),
    ]))
}

/// Append `rows` to `tidemark.runs` in one commit, creating it on first use.
pub async fn record_runs(wh: &Warehouse, rows: &[RunRow]) -> Result<DeltaTable> {
    let table = own::open_or_create(
        wh,
        RUNS,
        schema(),
        "tidemark: one row per ended run of a daemon job",
    )
    .await?;
    let name = format!("{OWN_SCHEMA}.{RUNS}");
    let columns = vec![
        own::texts(rows, |r| Some(&r.run_id)),
        own::texts(rows, |r| Some(&r.job)),
        own::texts(rows, |r| Some(&r.reason)),
        own::texts(rows, |r| Some(&r.inputs)),
        own::instants(rows, |r| Some(r.started_us)),
        own::instants(rows, |r| r.ended_us),
        own::texts(rows, |r| Some(&r.outcome)),
        own::ints(rows, |r| r.rows),
        own::ints(rows, |r| r.attempts),
        own::texts(rows, |r| r.error.as_deref()),
        own::texts(rows, |r| Some(&r.holder)),
    ];
    own::append(table, name, schema(), columns).await
}

/// `tidemark.runs`, if any run has ended.
pub async fn existing(wh: &Warehouse) -> Result<Option<DeltaTable>> {
    own::existing(wh, RUNS).await
}
