//! The scheduler's run store on the warehouse: claims by conditional put
//! (`tidemark_lake::RunClaims`), ended runs appended to `tidemark.runs`.
//!
//! Why files and not a Delta table for the claims: a claim must be atomic across
//! daemons and cheap to renew; put-if-absent of one object is both, on a local disk
//! and on S3 alike. `tidemark.runs` is the readers' copy, written once a run ends.

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use futures::FutureExt;
use tidemark_lake::{RunClaims, RunRow, Warehouse};
use tidemark_scheduler::store::{Outcome, RunRecord, RunStore, StoreError, ABANDONED_ERROR};

/// Claims kept in view per job: enough for its newest run, newest tick, newest
/// success and newest claim that was not abandoned.
const PER_JOB: usize = 64;

/// See the module docs.
#[derive(Debug, Clone)]
pub struct LakeRunStore {
    wh: Warehouse,
    claims: RunClaims,
}

impl LakeRunStore {
    /// The run store of `wh`.
    pub fn open(wh: &Warehouse) -> anyhow::Result<Self> {
        Ok(Self {
            wh: wh.clone(),
            claims: RunClaims::open(wh)?,
        })
    }
}

fn other(e: impl std::fmt::Display) -> StoreError {
    StoreError::Other(e.to_string())
}

fn body(r: &RunRecord) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec_pretty(r).map_err(other)
}

/// The row `tidemark.runs` keeps of an ended run.
pub fn row(r: &RunRecord) -> RunRow {
    let outcome = match r.outcome {
        Outcome::Running => "running",
        Outcome::Succeeded => "succeeded",
        Outcome::Failed => "failed",
        Outcome::Abandoned => "abandoned",
    };
    RunRow {
        run_id: r.id.clone(),
        job: r.job.clone(),
        reason: r.reason.clone(),
        inputs: serde_json::to_string(&r.inputs).unwrap_or_default(),
        started_us: r.started.timestamp_micros(),
        ended_us: r.ended.map(|t| t.timestamp_micros()),
        outcome: outcome.into(),
        rows: r.rows as i64,
        attempts: r.attempts as i64,
        error: r.error.clone(),
        holder: r.holder.clone(),
    }
}

impl RunStore for LakeRunStore {
    fn load(&self) -> BoxFuture<'static, Result<Vec<RunRecord>, StoreError>> {
        let this = self.clone();
        async move {
            let mut out = Vec::new();
            for (job, seq, bytes) in this.claims.list(PER_JOB).await.map_err(other)? {
                let r: RunRecord = serde_json::from_slice(&bytes).map_err(|e| {
                    StoreError::Other(format!(
                        "run {seq} of job {job} is not a readable record ({e}); move it out of <warehouse>/.tidemark/runs/{job}/ to go on"
                    ))
                })?;
                out.push(r);
            }
            Ok(out)
        }
        .boxed()
    }

    fn claim(&self, record: RunRecord) -> BoxFuture<'static, Result<bool, StoreError>> {
        let this = self.clone();
        async move {
            let won = this
                .claims
                .create(&record.job, record.seq, body(&record)?)
                .await
                .map_err(other)?;
            Ok(won)
        }
        .boxed()
    }

    fn renew(
        &self,
        job: &str,
        seq: u64,
        holder: &str,
        lease_until: DateTime<Utc>,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let (this, job, holder) = (self.clone(), job.to_string(), holder.to_string());
        async move {
            // Read back, not remembered: another daemon may have declared it
            // abandoned meanwhile.
            let mut r = match this.read(&job, seq).await? {
                Some(r) if r.outcome == Outcome::Running && r.holder == holder => r,
                Some(r) => return Err(StoreError::NotHeld(r.id)),
                None => return Err(StoreError::NoSuchRun(RunRecord::run_id(&job, seq))),
            };
            r.lease_until = lease_until;
            this.claims
                .overwrite(&job, seq, body(&r)?)
                .await
                .map_err(other)?;
            Ok(())
        }
        .boxed()
    }

    fn finish(&self, record: RunRecord) -> BoxFuture<'static, Result<(), StoreError>> {
        let this = self.clone();
        async move {
            this.claims
                .overwrite(&record.job, record.seq, body(&record)?)
                .await
                .map_err(other)?;
            tidemark_lake::record_runs(&this.wh, &[row(&record)])
                .await
                .map_err(other)?;
            Ok(())
        }
        .boxed()
    }

    fn abandon(&self, job: &str, seq: u64) -> BoxFuture<'static, Result<(), StoreError>> {
        let (this, job) = (self.clone(), job.to_string());
        async move {
            let Some(mut r) = this.read(&job, seq).await? else {
                return Err(StoreError::NoSuchRun(RunRecord::run_id(&job, seq)));
            };
            if r.outcome != Outcome::Running {
                return Ok(());
            }
            r.outcome = Outcome::Abandoned;
            r.ended = Some(Utc::now());
            r.error = Some(ABANDONED_ERROR.to_string());
            this.finish(r).await
        }
        .boxed()
    }
}

impl LakeRunStore {
    /// Run `seq` of `job` as stored now.
    async fn read(&self, job: &str, seq: u64) -> Result<Option<RunRecord>, StoreError> {
        let Some(bytes) = self.claims.read(job, seq).await.map_err(other)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes).map(Some).map_err(other)
    }
}
