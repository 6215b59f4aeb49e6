#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use futures::future::BoxFuture;
use futures::FutureExt;
use tidemark_scheduler::*;
use tokio::sync::{oneshot, Semaphore};
use tokio::task::JoinHandle;

pub fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, h, m, s).unwrap()
}

pub fn spec(name: &str, toml: &str) -> JobSpec {
    let table: toml::Table = toml::from_str(toml).unwrap();
    JobSpec::from_toml(name, &table).unwrap()
}

#[derive(Clone, Debug)]
pub enum Behave {
    Ok,
    /// Fails transiently this many more times, then succeeds.
    Transient(u32),
    Definite,
    Panic,
    /// Waits for `Lab::release` (or cancellation).
    Block,
}

/// A job kind whose runs are logged and whose behaviour tests set per job.
#[derive(Clone)]
pub struct Lab {
    pub runs: Arc<Mutex<Vec<RunContext>>>,
    behave: Arc<Mutex<BTreeMap<String, Behave>>>,
    gate: Arc<Semaphore>,
}

impl Default for Lab {
    fn default() -> Self {
        Lab {
            runs: Default::default(),
            behave: Default::default(),
            gate: Arc::new(Semaphore::new(0)),
        }
    }
}

impl Lab {
    pub fn registry(&self) -> Registry {
        let mut r = Registry::new();
        r.register(Arc::new(self.clone()));
        r
    }
    pub fn set(&self, job: &str, b: Behave) {
        self.behave.lock().unwrap().insert(job.into(), b);
    }
    pub fn release(&self, n: usize) {
        self.gate.add_permits(n);
    }
    pub fn ran(&self, job: &str) -> Vec<RunContext> {
        self.runs
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.job == job)
            .cloned()
            .collect()
    }
    pub fn count(&self) -> usize {
        self.runs.lock().unwrap().len()
    }
}

impl JobKind for Lab {
    fn kind(&self) -> &'static str {
        "test"
    }
    fn build(&self, _spec: &JobSpec) -> Result<Arc<dyn Job>, ConfigError> {
        Ok(Arc::new(LabJob { lab: self.clone() }))
    }
}

struct LabJob {
    lab: Lab,
}

impl Job for LabJob {
    fn run(&self, cx: RunContext) -> BoxFuture<'static, Result<RunOutput, JobError>> {
        let lab = self.lab.clone();
        async move {
            lab.runs.lock().unwrap().push(cx.clone());
            let behave = lab
                .behave
                .lock()
                .unwrap()
                .get(&cx.job)
                .cloned()
                .unwrap_or(Behave::Ok);
            match behave {
                Behave::Ok => Ok(RunOutput {
                    rows: 7,
                    message: None,
                }),
                Behave::Transient(0) => Ok(RunOutput {
                    rows: 1,
                    message: None,
                }),
                Behave::Transient(n) => {
                    lab.set(&cx.job, Behave::Transient(n - 1));
                    Err(JobError::Transient("lake busy".into()))
                }
                Behave::Definite => Err(JobError::Definite {
                    message: "table shop.nope does not exist".into(),
                    action: "check the query".into(),
                }),
                Behave::Panic => panic!("boom"),
                Behave::Block => {
                    tokio::select! {
                        p = lab.gate.acquire() => { p.unwrap().forget(); Ok(RunOutput::default()) }
                        _ = cx.cancel.cancelled() => Err(JobError::Transient("cancelled".into())),
                    }
                }
            }
        }
        .boxed()
    }
}

pub async fn settle() {
    for _ in 0..300 {
        tokio::task::yield_now().await;
    }
}

pub struct Daemon {
    pub handle: Handle,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), StoreError>>,
}

impl Daemon {
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        settle().await;
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("scheduler stops")
            .unwrap()
            .unwrap();
    }
}

pub struct World {
    pub clock: ManualClock,
    pub store: MemoryRunStore,
    pub inputs: MemoryInputs,
    pub lab: Lab,
}

impl World {
    pub fn new(start: DateTime<Utc>) -> World {
        World {
            clock: ManualClock::new(start),
            store: MemoryRunStore::new(),
            inputs: MemoryInputs::new(),
            lab: Lab::default(),
        }
    }

    pub async fn daemon(&self, specs: Vec<JobSpec>, holder: &str) -> Daemon {
        let s = Scheduler::new(
            specs,
            &self.lab.registry(),
            Arc::new(self.store.clone()),
            Arc::new(self.inputs.clone()),
            Arc::new(self.clock.clone()),
            holder.to_string(),
        )
        .unwrap();
        let handle = s.handle();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(s.run_until(async move {
            let _ = rx.await;
        }));
        settle().await;
        Daemon {
            handle,
            stop: Some(tx),
            task,
        }
    }

    pub async fn advance(&self, d: Duration) {
        self.clock.advance(d);
        settle().await;
    }

    /// Moves time in `step`s up to `total`, letting everything react at each step.
    pub async fn walk(&self, total: Duration, step: Duration) {
        let end = self.clock.now() + total;
        while self.clock.now() < end {
            self.advance(step).await;
        }
    }

    pub fn records(&self, job: &str) -> Vec<RunRecord> {
        self.store
            .records()
            .into_iter()
            .filter(|r| r.job == job)
            .collect()
    }
}

pub const SEC: Duration = Duration::from_secs(1);
pub const MIN: Duration = Duration::from_secs(60);
