//! The loop that decides when jobs run, and the [`Handle`] the API and CLI use.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::clock::{plus, Clock};
use crate::inputs::Inputs;
use crate::job::{Job, JobError, Reason, Registry, RunContext, RunOutput};
use crate::spec::{validate, ConfigError, JobSpec};
use crate::state::{Decision, JobState, LocalRun, Plan, State};
use crate::store::{Outcome, RunRecord, RunStore, StoreError, ABANDONED_ERROR, CANCELLED_ERROR};

/// What [`Handle::trigger`] returns when the job is busy and the trigger waits.
pub const QUEUED: &str = "queued";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TriggerError {
    #[error("there is no job named {0}; `tidemark jobs` lists them")]
    UnknownJob(String),
    #[error("the scheduler is not running")]
    Stopped,
    #[error("could not record the run: {0}")]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone, Serialize)]
pub struct JobStatus {
    pub name: String,
    pub kind: String,
    pub triggers: Vec<String>,
    /// The run in progress, here or in another daemon.
    pub running: Option<String>,
    pub next_due: Option<DateTime<Utc>>,
    pub last: Option<RunRecord>,
    pub paused_by_error: bool,
}

enum Msg {
    Trigger {
        job: String,
        by: String,
        params: BTreeMap<String, String>,
        reply: oneshot::Sender<Result<String, TriggerError>>,
    },
    Ended(RunRecord),
    Notify(String),
    Wake,
}

struct Shared {
    state: Mutex<State>,
    tx: mpsc::UnboundedSender<Msg>,
    events: broadcast::Sender<RunRecord>,
    registry: Registry,
    store: Arc<dyn RunStore>,
    inputs: Arc<dyn Inputs>,
    clock: Arc<dyn Clock>,
    holder: String,
    poll: Duration,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is only mutated in short non-panicking sections; a poisoned lock
        // means a bug elsewhere, not torn state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A validated spec with the job its kind built from it.
type Built = (JobSpec, Arc<dyn Job>);

fn build(specs: &[JobSpec], registry: &Registry) -> Result<Vec<Built>, ConfigError> {
    validate(specs, registry)?;
    specs
        .iter()
        .map(|spec| {
            let kind = registry.get(&spec.kind).ok_or_else(|| {
                ConfigError::new(&spec.name, format!("kind \"{}\" is not known", spec.kind))
            })?;
            Ok((spec.clone(), kind.build(spec)?))
        })
        .collect()
}

pub struct Scheduler {
    shared: Arc<Shared>,
    rx: mpsc::UnboundedReceiver<Msg>,
}

impl Scheduler {
    pub fn new(
        specs: Vec<JobSpec>,
        registry: &Registry,
        store: Arc<dyn RunStore>,
        inputs: Arc<dyn Inputs>,
        clock: Arc<dyn Clock>,
        holder: String,
    ) -> Result<Scheduler, ConfigError> {
        let built = build(&specs, registry)?;
        let now = clock.now();
        let mut state = State::default();
        for (spec, job) in built {
            state
                .jobs
                .insert(spec.name.clone(), JobState::new(spec, job, now));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(1024);
        Ok(Scheduler {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
                tx,
                events,
                registry: registry.clone(),
                store,
                inputs,
                clock,
                holder,
                poll: Duration::from_secs(1),
            }),
            rx,
        })
    }

    /// How often `new_data` inputs are checked when no [`Handle::notify`] comes (1s).
    /// Call it before [`Scheduler::handle`]; once a handle exists it has no effect.
    pub fn with_poll_interval(mut self, poll: Duration) -> Scheduler {
        match Arc::get_mut(&mut self.shared) {
            Some(shared) => shared.poll = poll.max(Duration::from_millis(1)),
            None => warn!("with_poll_interval called after handle(); keeping the poll interval"),
        }
        self
    }

    pub fn handle(&self) -> Handle {
        Handle {
            shared: self.shared.clone(),
        }
    }

    /// Runs the schedule until `shutdown` completes; then cancels the runs in progress,
    /// waits for them to record their outcome, and returns. Fails only if the run
    /// history cannot be loaded at start; later store errors are logged and retried.
    pub async fn run_until(mut self, shutdown: impl Future<Output = ()>) -> Result<(), StoreError> {
        let sh = self.shared.clone();
        self.startup().await?;
        let mut next_poll: Option<DateTime<Utc>> = None;
        tokio::pin!(shutdown);
        loop {
            while let Ok(msg) = self.rx.try_recv() {
                self.handle_msg(msg).await;
            }
            let now = sh.clock.now();
            let watched = self.watched_inputs();
            let requested = std::mem::take(&mut sh.lock().poll_requested);
            let poll_due = requested || next_poll.is_none_or(|t| t <= now);
            if !watched.is_empty() && poll_due {
                self.poll_inputs(&watched, now).await;
                next_poll = Some(plus(now, sh.poll));
            }
            loop {
                let job = sh.lock().pop_due(now);
                let Some(job) = job else { break };
                self.look_at(&job, now, None).await;
            }
            let wake = {
                let st = sh.lock();
                let first = st.wakes.first().map(|(t, _)| *t);
                let poll = next_poll.filter(|_| !watched.is_empty());
                [first, poll].into_iter().flatten().min()
            };
            let sleep = async {
                match wake {
                    Some(at) => sh.clock.sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut shutdown => break,
                msg = self.rx.recv() => {
                    if let Some(msg) = msg {
                        self.handle_msg(msg).await;
                    }
                }
                _ = sleep => {}
            }
        }
        self.stop().await;
        Ok(())
    }

    async fn startup(&mut self) -> Result<(), StoreError> {
        let sh = &self.shared;
        let records = self.load_and_reap().await?;
        let now = sh.clock.now();
        let mut st = sh.lock();
        st.rebuild(records);
        let names: Vec<String> = st.jobs.keys().cloned().collect();
        for name in names {
            let cursor = st.cursor(&name);
            if let Some(js) = st.jobs.get_mut(&name) {
                js.init_ticks(&cursor, now, true);
            }
            st.dirty.insert(name);
        }
        info!(jobs = st.jobs.len(), holder = %sh.holder, "scheduler started");
        Ok(())
    }

    /// Loads every run and declares abandoned those whose holder stopped renewing
    /// (other than our own runs in progress).
    async fn load_and_reap(&self) -> Result<Vec<RunRecord>, StoreError> {
        let sh = &self.shared;
        let mut records = sh.store.load().await?;
        let now = sh.clock.now();
        let local: BTreeSet<(String, u64)> = sh
            .lock()
            .jobs
            .values()
            .filter_map(|js| js.running.as_ref().map(|r| (js.spec.name.clone(), r.seq)))
            .collect();
        for r in records.iter_mut() {
            if r.outcome != Outcome::Running
                || r.lease_until >= now
                || local.contains(&(r.job.clone(), r.seq))
            {
                continue;
            }
            match sh.store.abandon(&r.job, r.seq).await {
                Ok(()) => {
                    warn!(job = %r.job, run_id = %r.id, holder = %r.holder, "run abandoned: its lease lapsed");
                    r.outcome = Outcome::Abandoned;
                    r.ended = Some(r.lease_until);
                    r.error = Some(ABANDONED_ERROR.to_string());
                }
                Err(e) => {
                    warn!(job = %r.job, run_id = %r.id, error = %e, "could not mark a lapsed run abandoned")
                }
            }
        }
        Ok(records)
    }

    /// Re-derives everything from the store, after another daemon was seen at work.
    async fn refresh(&self) {
        let sh = &self.shared;
        let now = sh.clock.now();
        sh.lock().last_refresh = Some(now);
        let records = match self.load_and_reap().await {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %e, "could not reload the run history");
                return;
            }
        };
        let mut st = sh.lock();
        st.rebuild(records);
        let names: Vec<String> = st.jobs.keys().cloned().collect();
        for name in names {
            let cursor = st.cursor(&name);
            if let Some(js) = st.jobs.get_mut(&name) {
                js.follow_ticks(&cursor);
                js.owe_abandoned_tick(&cursor);
                js.recompute_pending(&cursor, now);
            }
            st.dirty.insert(name);
        }
    }

    fn watched_inputs(&self) -> Vec<String> {
        let st = self.shared.lock();
        let all: BTreeSet<String> = st
            .jobs
            .values()
            .flat_map(|js| js.spec.new_data_inputs())
            .collect();
        all.into_iter().collect()
    }

    async fn poll_inputs(&self, names: &[String], now: DateTime<Utc>) {
        let sh = &self.shared;
        let versions = match sh.inputs.versions(names).await {
            Ok(v) => v,
            Err(e) => {
                warn!(error = %e, "could not read input versions");
                return;
            }
        };
        let mut st = sh.lock();
        let names: Vec<String> = st.jobs.keys().cloned().collect();
        for name in names {
            let cursor = st.cursor(&name);
            let Some(js) = st.jobs.get_mut(&name) else {
                continue;
            };
            if js.spec.new_data_inputs().is_empty() {
                continue;
            }
            let before = (js.pending_since, js.last_change);
            js.observe(&versions, &cursor, now);
            if (js.pending_since, js.last_change) != before {
                st.dirty.insert(name);
            }
        }
    }

    async fn handle_msg(&mut self, msg: Msg) {
        let sh = self.shared.clone();
        match msg {
            Msg::Trigger {
                job,
                by,
                params,
                reply,
            } => {
                let now = sh.clock.now();
                {
                    let mut st = sh.lock();
                    let last_seq = st.cursor(&job).last_seq;
                    let Some(js) = st.jobs.get_mut(&job) else {
                        let _ = reply.send(Err(TriggerError::UnknownJob(job)));
                        return;
                    };
                    // A manual trigger is how a paused job is resumed.
                    js.unpause_seq = js.unpause_seq.max(last_seq);
                    js.manual = Some((by, params));
                }
                self.look_at(&job, now, Some(reply)).await;
            }
            Msg::Ended(record) => {
                let mut st = sh.lock();
                st.in_flight = st.in_flight.saturating_sub(1);
                let job = record.job.clone();
                let seq = record.seq;
                st.history.entry(job.clone()).or_default().put(record);
                let cursor = st.cursor(&job);
                let now = sh.clock.now();
                if let Some(js) = st.jobs.get_mut(&job) {
                    if js.running.as_ref().is_some_and(|r| r.seq == seq) {
                        js.running = None;
                    }
                    js.recompute_pending(&cursor, now);
                    // Commits that landed during the run should be seen right away.
                    if !js.spec.new_data_inputs().is_empty() {
                        st.poll_requested = true;
                    }
                }
                st.dirty.insert(job.clone());
                for d in st.dependents(&job) {
                    st.dirty.insert(d);
                }
            }
            Msg::Notify(input) => {
                let mut st = sh.lock();
                if st
                    .jobs
                    .values()
                    .any(|js| js.spec.new_data_inputs().contains(&input))
                {
                    st.poll_requested = true;
                }
            }
            Msg::Wake => {}
        }
    }

    /// Evaluates one job and starts its run if one is due. `reply` is a manual
    /// trigger's answer: the run id, or [`QUEUED`] when the job is busy.
    async fn look_at(
        &self,
        job: &str,
        now: DateTime<Utc>,
        reply: Option<oneshot::Sender<Result<String, TriggerError>>>,
    ) {
        let sh = &self.shared;
        let decision = sh.lock().evaluate(job, now, sh.poll);
        let answer = match decision {
            Decision::Idle => Ok(QUEUED.to_string()),
            Decision::Reload => {
                self.refresh().await;
                Ok(QUEUED.to_string())
            }
            Decision::Start(plan) => match self.start(*plan).await {
                Ok(Some(id)) => Ok(id),
                Ok(None) => Ok(QUEUED.to_string()),
                Err(e) => Err(TriggerError::Store(e)),
            },
        };
        if let Some(reply) = reply {
            let _ = reply.send(answer);
        }
    }

    /// Claims and spawns a run. `Ok(None)`: another daemon claimed that seq first.
    async fn start(&self, plan: Plan) -> Result<Option<String>, StoreError> {
        let sh = &self.shared;
        let retry_at = |e: &StoreError, what: &str| {
            warn!(job = %plan.job, error = %e, "{what}; trying again shortly");
            let now = sh.clock.now();
            sh.lock().set_wake(&plan.job, Some(plus(now, sh.poll)));
        };
        let captured = if plan.inputs.is_empty() {
            BTreeMap::new()
        } else {
            match sh.inputs.versions(&plan.inputs).await {
                Ok(v) => v,
                Err(e) => {
                    retry_at(&e, "could not read input versions");
                    return Err(e);
                }
            }
        };
        let now = sh.clock.now();
        let seq = sh.lock().cursor(&plan.job).last_seq + 1;
        let id = RunRecord::run_id(&plan.job, seq);
        let record = RunRecord {
            id: id.clone(),
            job: plan.job.clone(),
            seq,
            reason: plan.reason.to_string(),
            tick: plan.reason.tick(),
            inputs: captured.clone(),
            params: plan.params.clone(),
            holder: sh.holder.clone(),
            started: now,
            ended: None,
            lease_until: plus(now, plan.spec.lease),
            outcome: Outcome::Running,
            attempts: 0,
            rows: 0,
            error: None,
        };
        match sh.store.claim(record.clone()).await {
            Ok(true) => {}
            Ok(false) => {
                info!(job = %plan.job, run_id = %id, "another daemon claimed this run first; reloading");
                self.refresh().await;
                return Ok(None);
            }
            Err(e) => {
                retry_at(&e, "could not claim a run");
                return Err(e);
            }
        }
        let cancel = CancellationToken::new();
        {
            let mut st = sh.lock();
            st.history
                .entry(plan.job.clone())
                .or_default()
                .put(record.clone());
            st.in_flight += 1;
            let cursor = st.cursor(&plan.job);
            match st.jobs.get_mut(&plan.job) {
                Some(js) => {
                    if let Some(tick) = plan.reason.tick() {
                        if let Some(n) = js.spec.next_tick_after(tick) {
                            js.next_tick = Some(js.next_tick.map_or(n, |c| c.max(n)));
                        }
                        js.catching_up = false;
                    }
                    if matches!(plan.reason, Reason::Manual { .. }) {
                        js.manual = None;
                    }
                    for (k, v) in &captured {
                        let e = js.observed.entry(k.clone()).or_insert(*v);
                        *e = (*e).max(*v);
                    }
                    js.recompute_pending(&cursor, now);
                    js.running = Some(LocalRun {
                        id: id.clone(),
                        seq,
                        cancel: cancel.clone(),
                    });
                }
                // Removed while we were claiming: let the run end at once.
                None => cancel.cancel(),
            }
            st.set_wake(&plan.job, None);
        }
        info!(job = %plan.job, run_id = %id, reason = %plan.reason, "run started");
        let _ = sh.events.send(record.clone());
        let cx = RunContext {
            run_id: id.clone(),
            job: plan.job.clone(),
            reason: plan.reason.clone(),
            inputs: captured,
            params: plan.params,
            cancel: cancel.clone(),
        };
        tokio::spawn(execute(sh.clone(), record, plan.runner, plan.spec, cx));
        Ok(Some(id))
    }

    async fn stop(&mut self) {
        let sh = self.shared.clone();
        let mut in_flight = {
            let st = sh.lock();
            for js in st.jobs.values() {
                if let Some(r) = &js.running {
                    info!(job = %js.spec.name, run_id = %r.id, "cancelling run: the scheduler is stopping");
                    r.cancel.cancel();
                }
            }
            st.in_flight
        };
        while in_flight > 0 {
            match self.rx.recv().await {
                Some(msg @ Msg::Ended(_)) => {
                    self.handle_msg(msg).await;
                    in_flight = sh.lock().in_flight;
                }
                Some(Msg::Trigger { reply, .. }) => {
                    let _ = reply.send(Err(TriggerError::Stopped));
                }
                Some(_) => {}
                None => break,
            }
        }
        info!("scheduler stopped");
    }
}

#[derive(Debug)]
enum Attempt {
    Job(JobError),
    Panicked(String),
    Cancelled,
}

fn is_transient(e: &Attempt) -> bool {
    matches!(e, Attempt::Job(JobError::Transient(_)))
}

fn panic_message(e: tokio::task::JoinError) -> String {
    if e.is_cancelled() {
        return "its task was cancelled".to_string();
    }
    let payload = e.into_panic();
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-text panic".to_string())
}

/// Runs one claimed run to its end: attempts with backoff, lease renewal, and the
/// final record (written to the store before the loop hears of it).
async fn execute(
    sh: Arc<Shared>,
    mut record: RunRecord,
    job: Arc<dyn Job>,
    spec: JobSpec,
    cx: RunContext,
) {
    let cancel = cx.cancel.clone();
    let attempts = Arc::new(AtomicU32::new(0));
    let attempt = {
        let attempts = attempts.clone();
        move || {
            let job = job.clone();
            let cx = cx.clone();
            let attempts = attempts.clone();
            async move {
                if cx.cancel.is_cancelled() {
                    return Err(Attempt::Cancelled);
                }
                attempts.fetch_add(1, Ordering::SeqCst);
                // A task of its own, so a panic in the job is a JoinError, not ours.
                match tokio::spawn(async move { job.run(cx).await }).await {
                    Ok(Ok(out)) => Ok(out),
                    Ok(Err(e)) => Err(Attempt::Job(e)),
                    Err(e) => Err(Attempt::Panicked(panic_message(e))),
                }
            }
        }
    };
    let backoff = ExponentialBuilder::default()
        .with_min_delay(spec.retry.initial_backoff)
        .with_max_delay(spec.retry.max_backoff)
        .with_max_times(spec.retry.max_attempts.saturating_sub(1) as usize)
        .with_jitter();
    let sleeper = {
        let clock = sh.clock.clone();
        let cancel = cancel.clone();
        move |d: Duration| {
            let sleep = clock.sleep_until(plus(clock.now(), d));
            let cancel = cancel.clone();
            async move {
                tokio::select! {
                    _ = sleep => {}
                    _ = cancel.cancelled() => {}
                }
            }
        }
    };
    let (njob, nid) = (record.job.clone(), record.id.clone());
    let work: futures::future::BoxFuture<'static, Result<RunOutput, Attempt>> = Box::pin(attempt
        .retry(backoff)
        .sleep(sleeper)
        .when(is_transient)
        .notify(move |e: &Attempt, d: Duration| {
            if let Attempt::Job(e) = e {
                warn!(job = %njob, run_id = %nid, error = %e, retry_in = ?d, "transient failure; retrying");
            }
        }));
    let (rjob, rseq, rid) = (record.job.clone(), record.seq, record.id.clone());
    let renew = async {
        let period = (spec.lease / 3).max(Duration::from_millis(1));
        loop {
            sh.clock.sleep_until(plus(sh.clock.now(), period)).await;
            let until = plus(sh.clock.now(), spec.lease);
            match sh.store.renew(&rjob, rseq, &sh.holder, until).await {
                Ok(()) => {}
                Err(e @ (StoreError::NotHeld(_) | StoreError::NoSuchRun(_))) => {
                    warn!(job = %rjob, run_id = %rid, error = %e, "lost the run's lease; cancelling it");
                    cancel.cancel();
                    return;
                }
                Err(e) => {
                    warn!(job = %rjob, run_id = %rid, error = %e, "could not renew the run's lease")
                }
            }
        }
    };
    let result: Result<RunOutput, Attempt> = {
        tokio::pin!(work);
        tokio::pin!(renew);
        let mut renewing = true;
        loop {
            tokio::select! {
                r = &mut work => break r,
                _ = &mut renew, if renewing => renewing = false,
            }
        }
    };

    let now = sh.clock.now();
    let n = attempts.load(Ordering::SeqCst);
    record.ended = Some(now);
    record.attempts = n;
    let (outcome, error) = match result {
        Ok(out) => {
            record.rows = out.rows;
            if let Some(message) = &out.message {
                info!(job = %record.job, run_id = %record.id, message = %message, "run reported");
            }
            (Outcome::Succeeded, None)
        }
        Err(e) if cancel.is_cancelled() => {
            let detail = match e {
                Attempt::Job(e) => format!(": {e}"),
                Attempt::Panicked(m) => format!(": the job panicked: {m}"),
                Attempt::Cancelled => String::new(),
            };
            (Outcome::Abandoned, Some(format!("{CANCELLED_ERROR}{detail}")))
        }
        Err(Attempt::Job(JobError::Transient(m))) => (
            Outcome::Failed,
            Some(format!("{m} (gave up after {n} attempts; the next trigger runs it again)")),
        ),
        Err(Attempt::Job(JobError::Definite { message, action })) => (
            Outcome::Failed,
            Some(format!(
                "{message}; {action}; fix it, then trigger the job by hand (tidemark jobs run {}) or change its config",
                record.job
            )),
        ),
        Err(Attempt::Panicked(m)) => (
            Outcome::Failed,
            Some(format!("the job panicked: {m}; the next trigger runs it again")),
        ),
        Err(Attempt::Cancelled) => (Outcome::Abandoned, Some(CANCELLED_ERROR.to_string())),
    };
    record.outcome = outcome;
    record.error = error;

    // The record is the cursor: try hard, but a run that cannot be recorded is left
    // Running and will be reaped as abandoned once its lease lapses.
    let mut written = false;
    for attempt in 0..5u32 {
        match sh.store.finish(record.clone()).await {
            Ok(()) => {
                written = true;
                break;
            }
            Err(e) => {
                warn!(job = %record.job, run_id = %record.id, error = %e, "could not record the run's end");
                let wait = Duration::from_secs(1 << attempt);
                sh.clock.sleep_until(plus(sh.clock.now(), wait)).await;
            }
        }
    }
    match (&record.outcome, written) {
        (Outcome::Succeeded, _) => {
            info!(job = %record.job, run_id = %record.id, rows = record.rows, attempts = n, "run succeeded")
        }
        _ => warn!(
            job = %record.job,
            run_id = %record.id,
            outcome = ?record.outcome,
            error = record.error.as_deref().unwrap_or(""),
            recorded = written,
            "run did not succeed"
        ),
    }
    let _ = sh.events.send(record.clone());
    let _ = sh.tx.send(Msg::Ended(record));
}

/// The scheduler as seen by the HTTP API, the CLI and metrics.
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl Handle {
    /// Runs `job` now, or once after its current run if it is running (several such
    /// triggers collapse into one). Returns the run id, or [`QUEUED`].
    pub async fn trigger(
        &self,
        job: &str,
        by: &str,
        params: BTreeMap<String, String>,
    ) -> Result<String, TriggerError> {
        if !self.shared.lock().jobs.contains_key(job) {
            return Err(TriggerError::UnknownJob(job.to_string()));
        }
        info!(job, by, "manual trigger");
        let (reply, rx) = oneshot::channel();
        self.shared
            .tx
            .send(Msg::Trigger {
                job: job.to_string(),
                by: by.to_string(),
                params,
                reply,
            })
            .map_err(|_| TriggerError::Stopped)?;
        rx.await.map_err(|_| TriggerError::Stopped)?
    }

    /// A hint that `input` has a new commit: check now rather than at the next poll.
    pub fn notify(&self, input: &str) {
        let _ = self.shared.tx.send(Msg::Notify(input.to_string()));
    }

    pub fn jobs(&self) -> Vec<JobStatus> {
        let st = self.shared.lock();
        st.jobs
            .values()
            .map(|js| {
                let cursor = st.cursor(&js.spec.name);
                let paused = js.paused(&cursor);
                let mut triggers: Vec<String> =
                    js.spec.triggers.iter().map(|t| t.describe()).collect();
                if triggers.is_empty() {
                    triggers.push("manual only".to_string());
                }
                JobStatus {
                    name: js.spec.name.clone(),
                    kind: js.spec.kind.clone(),
                    triggers,
                    running: js
                        .running
                        .as_ref()
                        .map(|r| r.id.clone())
                        .or_else(|| js.remote(&cursor).map(|l| l.id.clone())),
                    next_due: if paused {
                        None
                    } else {
                        [js.next_tick, js.data_due()].into_iter().flatten().min()
                    },
                    last: st
                        .history
                        .get(&js.spec.name)
                        .and_then(|h| h.recent.last_key_value().map(|(_, r)| r.clone())),
                    paused_by_error: paused,
                }
            })
            .collect()
    }

    pub fn run(&self, id: &str) -> Option<RunRecord> {
        let (job, seq) = id.rsplit_once('-')?;
        let seq: u64 = seq.parse().ok()?;
        self.shared
            .lock()
            .history
            .get(job)?
            .recent
            .get(&seq)
            .cloned()
    }

    /// Recent runs, newest first, of one job or of all.
    pub fn runs(&self, job: Option<&str>, limit: usize) -> Vec<RunRecord> {
        let st = self.shared.lock();
        match job {
            Some(job) => st
                .history
                .get(job)
                .map(|h| h.recent.values().rev().take(limit).cloned().collect())
                .unwrap_or_default(),
            None => {
                let mut all: Vec<&RunRecord> = st
                    .history
                    .values()
                    .flat_map(|h| h.recent.values())
                    .collect();
                all.sort_by(|a, b| b.started.cmp(&a.started).then_with(|| b.id.cmp(&a.id)));
                all.into_iter().take(limit).cloned().collect()
            }
        }
    }

    /// Hot reload. Validated as a whole first (on error the old specs stay). Changed
    /// jobs are un-paused and, if their schedule changed, tick from now; new jobs
    /// start like never-seen ones; removed jobs' runs are cancelled.
    pub fn replace(&self, specs: Vec<JobSpec>) -> Result<(), ConfigError> {
        let sh = &self.shared;
        let built = build(&specs, &sh.registry)?;
        let now = sh.clock.now();
        let mut st = sh.lock();
        let keep: BTreeSet<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        let removed: Vec<String> = st
            .jobs
            .keys()
            .filter(|n| !keep.contains(n.as_str()))
            .cloned()
            .collect();
        for name in removed {
            st.set_wake(&name, None);
            if let Some(js) = st.jobs.remove(&name) {
                if let Some(r) = js.running {
                    info!(job = %name, run_id = %r.id, "job removed from the config; cancelling its run");
                    r.cancel.cancel();
                }
            }
        }
        for (spec, job) in built {
            let name = spec.name.clone();
            let cursor = st.cursor(&name);
            match st.jobs.get_mut(&name) {
                Some(js) if js.spec == spec => continue,
                Some(js) => {
                    let ticks = |s: &JobSpec| {
                        s.triggers
                            .iter()
                            .filter(|t| t.next_tick_after(now).is_some())
                            .cloned()
                            .collect::<Vec<_>>()
                    };
                    let schedule_changed = ticks(&js.spec) != ticks(&spec);
                    info!(job = %name, "job config changed");
                    js.spec = spec;
                    js.job = job;
                    js.unpause_seq = cursor.last_seq;
                    if schedule_changed {
                        js.init_ticks(&cursor, now, false);
                    }
                    js.recompute_pending(&cursor, now);
                }
                None => {
                    info!(job = %name, "job added");
                    let mut js = JobState::new(spec, job, now);
                    js.init_ticks(&cursor, now, false);
                    st.jobs.insert(name.clone(), js);
                }
            }
            st.dirty.insert(name);
        }
        st.poll_requested = true;
        drop(st);
        let _ = sh.tx.send(Msg::Wake);
        Ok(())
    }

    /// Every run start and end.
    pub fn subscribe(&self) -> broadcast::Receiver<RunRecord> {
        self.shared.events.subscribe()
    }
}
