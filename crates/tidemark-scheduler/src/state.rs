//! The scheduler's in-memory view: per-job trigger state and the run history mirrored
//! from the store. Cursors are always re-derived from run records, never kept apart
//! from them, so a reload from the store puts every daemon back in step.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::clock::plus;
use crate::job::{Job, Reason};
use crate::spec::{CatchUp, JobSpec};
use crate::store::{Outcome, RunRecord};

/// Runs kept in memory per job; older ones are folded into the cursor and dropped.
const HISTORY: usize = 200;

/// What the run records of one job say, folded in `seq` order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Cursor {
    pub last_seq: u64,
    /// Newest tick served by a run that was not abandoned.
    pub last_tick: Option<DateTime<Utc>>,
    /// Newest tick of an abandoned run: still owed if newer than `last_tick`.
    pub abandoned_tick: Option<DateTime<Utc>>,
    /// The newest non-abandoned claim: its seq, input versions and start.
    pub consumed: Option<(u64, BTreeMap<String, i64>, DateTime<Utc>)>,
    pub last_success_end: Option<DateTime<Utc>>,
    pub latest: Option<Latest>,
}

#[derive(Debug, Clone)]
pub(crate) struct Latest {
    pub seq: u64,
    pub id: String,
    pub outcome: Outcome,
    pub pauses: bool,
    pub lease_until: DateTime<Utc>,
}

impl Cursor {
    fn apply(&mut self, r: &RunRecord) {
        self.last_seq = self.last_seq.max(r.seq);
        if r.outcome != Outcome::Abandoned {
            if let Some(t) = r.tick {
                self.last_tick = Some(self.last_tick.map_or(t, |l| l.max(t)));
            }
            if self.consumed.as_ref().is_none_or(|(s, _, _)| *s <= r.seq) {
                self.consumed = Some((r.seq, r.inputs.clone(), r.started));
            }
        }
        if let (Outcome::Abandoned, Some(t)) = (r.outcome, r.tick) {
            self.abandoned_tick = Some(self.abandoned_tick.map_or(t, |l| l.max(t)));
        }
        if r.outcome == Outcome::Succeeded {
            if let Some(end) = r.ended {
                self.last_success_end = Some(self.last_success_end.map_or(end, |l| l.max(end)));
            }
        }
        if self.latest.as_ref().is_none_or(|l| l.seq <= r.seq) {
            self.latest = Some(Latest {
                seq: r.seq,
                id: r.id.clone(),
                outcome: r.outcome,
                pauses: r.pauses_job(),
                lease_until: r.lease_until,
            });
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct History {
    base: Cursor,
    pub recent: BTreeMap<u64, RunRecord>,
    pub cursor: Cursor,
}

impl History {
    pub fn put(&mut self, record: RunRecord) {
        self.recent.insert(record.seq, record);
        while self.recent.len() > HISTORY {
            // Only ended runs are folded away: a running one may still change.
            match self.recent.first_key_value() {
                Some((_, r)) if r.ended.is_some() => {
                    if let Some((_, r)) = self.recent.pop_first() {
                        self.base.apply(&r);
                    }
                }
                _ => break,
            }
        }
        let mut cursor = self.base.clone();
        for r in self.recent.values() {
            cursor.apply(r);
        }
        self.cursor = cursor;
    }
}

pub(crate) struct LocalRun {
    pub id: String,
    pub seq: u64,
    pub cancel: CancellationToken,
}

pub(crate) struct JobState {
    pub spec: JobSpec,
    pub job: Arc<dyn Job>,
    /// The earliest cron/every tick not yet served; due when <= now.
    pub next_tick: Option<DateTime<Utc>>,
    /// The due tick was missed while no daemon ran.
    pub catching_up: bool,
    /// A manual trigger waiting for the job to be free (several collapse into one).
    pub manual: Option<(String, BTreeMap<String, String>)>,
    pub observed: BTreeMap<String, i64>,
    /// When an input version not yet consumed was first seen.
    pub pending_since: Option<DateTime<Utc>>,
    /// When the observed versions last changed (debounce runs from here).
    pub last_change: Option<DateTime<Utc>>,
    /// For `after` on a job that never ran: upstream successes before this count not.
    pub baseline: DateTime<Utc>,
    /// A definite failure at or below this seq no longer pauses the job.
    pub unpause_seq: u64,
    pub running: Option<LocalRun>,
    pub wake: Option<DateTime<Utc>>,
}

impl JobState {
    pub fn new(spec: JobSpec, job: Arc<dyn Job>, now: DateTime<Utc>) -> JobState {
        JobState {
            spec,
            job,
            next_tick: None,
            catching_up: false,
            manual: None,
            observed: BTreeMap::new(),
            pending_since: None,
            last_change: None,
            baseline: now,
            unpause_seq: 0,
            running: None,
            wake: None,
        }
    }

    /// Places the tick cursor: at startup, missed ticks are caught up once or skipped;
    /// otherwise (new job, changed schedule) ticks start after now.
    pub fn init_ticks(&mut self, cursor: &Cursor, now: DateTime<Utc>, startup: bool) {
        self.catching_up = false;
        if !self.spec.has_ticks() {
            self.next_tick = None;
            return;
        }
        // The first tick owed: the one after the last served, or an abandoned one.
        let owed = cursor
            .abandoned_tick
            .filter(|t| cursor.last_tick.is_none_or(|l| *t > l));
        let after_last = [
            cursor
                .last_tick
                .and_then(|last| self.spec.next_tick_after(last)),
            owed,
        ]
        .into_iter()
        .flatten()
        .min()
        .filter(|_| startup);
        self.next_tick = match after_last {
            Some(n) if n <= now => match self.spec.catch_up {
                CatchUp::Once => {
                    tracing::info!(job = %self.spec.name, missed_from = %n, "ticks were missed while no daemon ran; catching up once");
                    self.catching_up = true;
                    Some(n)
                }
                CatchUp::Skip => {
                    tracing::info!(job = %self.spec.name, missed_from = %n, "ticks were missed while no daemon ran; skipping them (catch_up = \"skip\")");
                    self.spec.next_tick_after(now)
                }
            },
            Some(n) => Some(n),
            None => self.spec.next_tick_after(now),
        };
    }

    /// After another daemon served ticks, move past them.
    pub fn follow_ticks(&mut self, cursor: &Cursor) {
        if let Some(n) = cursor.last_tick.and_then(|t| self.spec.next_tick_after(t)) {
            if self.next_tick.is_none_or(|c| n > c) {
                self.next_tick = Some(n);
                self.catching_up = false;
            }
        }
    }

    /// A tick whose run was just found abandoned is owed again (catch_up = "once"),
    /// as it would be at the next start.
    pub fn owe_abandoned_tick(&mut self, cursor: &Cursor) {
        let owed = cursor
            .abandoned_tick
            .filter(|t| cursor.last_tick.is_none_or(|l| *t > l));
        if let Some(t) = owed {
            if self.spec.catch_up == CatchUp::Once && self.next_tick.is_some_and(|n| t < n) {
                tracing::info!(job = %self.spec.name, tick = %t, "the run of this tick was abandoned; running it again");
                self.next_tick = Some(t);
                self.catching_up = true;
            }
        }
    }

    /// Records freshly read versions and whether any is beyond what was consumed.
    pub fn observe(
        &mut self,
        versions: &BTreeMap<String, i64>,
        cursor: &Cursor,
        now: DateTime<Utc>,
    ) {
        let inputs = self.spec.new_data_inputs();
        let mut changed = false;
        for name in &inputs {
            if let Some(v) = versions.get(name) {
                if self.observed.get(name) != Some(v) {
                    let newer = self.observed.get(name).is_none_or(|old| v > old);
                    if newer {
                        self.observed.insert(name.clone(), *v);
                        changed = true;
                    }
                }
            }
        }
        if changed {
            self.last_change = Some(now);
        }
        self.recompute_pending(cursor, now);
    }

    pub fn recompute_pending(&mut self, cursor: &Cursor, now: DateTime<Utc>) {
        let consumed = cursor.consumed.as_ref().map(|(_, c, _)| c);
        let unconsumed = self
            .observed
            .iter()
            .any(|(name, v)| consumed.and_then(|c| c.get(name)).is_none_or(|c| v > c));
        if unconsumed {
            self.pending_since.get_or_insert(now);
            self.last_change.get_or_insert(now);
        } else {
            self.pending_since = None;
            self.last_change = None;
        }
    }

    /// When pending new data should fire: `debounce` after the last change, but no
    /// later than `freshness` after it was first seen.
    pub fn data_due(&self) -> Option<DateTime<Utc>> {
        let since = self.pending_since?;
        let last = self.last_change.unwrap_or(since);
        self.spec
            .triggers
            .iter()
            .filter_map(|t| match t {
                crate::spec::Trigger::NewData {
                    debounce,
                    freshness,
                    ..
                } => {
                    let d = plus(last, *debounce);
                    Some(freshness.map_or(d, |f| d.min(plus(since, f))))
                }
                _ => None,
            })
            .min()
    }

    pub fn paused(&self, cursor: &Cursor) -> bool {
        cursor
            .latest
            .as_ref()
            .is_some_and(|l| l.pauses && l.seq > self.unpause_seq)
    }

    /// The run in progress in another process, if the store says so.
    pub fn remote<'a>(&self, cursor: &'a Cursor) -> Option<&'a Latest> {
        cursor.latest.as_ref().filter(|l| {
            l.outcome == Outcome::Running && self.running.as_ref().is_none_or(|r| r.seq != l.seq)
        })
    }

    /// `after` is satisfied when every upstream succeeded since this job's last claim.
    pub fn after_due(
        &self,
        cursor: &Cursor,
        histories: &BTreeMap<String, History>,
    ) -> Option<String> {
        let ups: Vec<&String> = self.spec.after().collect();
        if ups.is_empty() {
            return None;
        }
        let since = cursor
            .consumed
            .as_ref()
            .map_or(self.baseline, |(_, _, s)| *s);
        let mut newest: Option<(DateTime<Utc>, &String)> = None;
        for up in ups {
            let end = histories.get(up.as_str())?.cursor.last_success_end?;
            if end <= since {
                return None;
            }
            if newest.is_none_or(|(t, _)| end > t) {
                newest = Some((end, up));
            }
        }
        newest.map(|(_, up)| up.clone())
    }
}

/// Everything the loop and the handles share.
#[derive(Default)]
pub(crate) struct State {
    pub jobs: BTreeMap<String, JobState>,
    pub history: BTreeMap<String, History>,
    /// Jobs by the instant they next need looking at.
    pub wakes: BTreeSet<(DateTime<Utc>, String)>,
    /// Jobs to look at now (events, ends, reconfiguration).
    pub dirty: BTreeSet<String>,
    pub in_flight: usize,
    pub poll_requested: bool,
    pub last_refresh: Option<DateTime<Utc>>,
}

/// A run the loop decided to start.
pub(crate) struct Plan {
    pub job: String,
    pub reason: Reason,
    pub params: BTreeMap<String, String>,
    pub runner: Arc<dyn Job>,
    pub inputs: Vec<String>,
    pub spec: JobSpec,
}

pub(crate) enum Decision {
    Idle,
    Start(Box<Plan>),
    Reload,
}

impl State {
    pub fn cursor(&self, job: &str) -> Cursor {
        self.history
            .get(job)
            .map(|h| h.cursor.clone())
            .unwrap_or_default()
    }

    pub fn rebuild(&mut self, records: Vec<RunRecord>) {
        let mut history: BTreeMap<String, History> = BTreeMap::new();
        let mut records = records;
        records.sort_by(|a, b| (&a.job, a.seq).cmp(&(&b.job, b.seq)));
        for r in records {
            history.entry(r.job.clone()).or_default().put(r);
        }
        self.history = history;
    }

    pub fn set_wake(&mut self, job: &str, at: Option<DateTime<Utc>>) {
        let Some(js) = self.jobs.get_mut(job) else {
            return;
        };
        if let Some(old) = js.wake.take() {
            self.wakes.remove(&(old, job.to_string()));
        }
        js.wake = at;
        if let Some(at) = at {
            self.wakes.insert((at, job.to_string()));
        }
    }

    /// Takes the next job to look at: dirty ones first, then those whose wake is due.
    pub fn pop_due(&mut self, now: DateTime<Utc>) -> Option<String> {
        if let Some(job) = self.dirty.pop_first() {
            return Some(job);
        }
        let (at, job) = self.wakes.first()?.clone();
        if at > now {
            return None;
        }
        self.set_wake(&job, None);
        Some(job)
    }

    pub fn dependents(&self, job: &str) -> Vec<String> {
        self.jobs
            .values()
            .filter(|js| js.spec.after().any(|u| u == job))
            .map(|js| js.spec.name.clone())
            .collect()
    }

    /// Decides whether `job` should start a run now, and when to look again.
    pub fn evaluate(&mut self, job: &str, now: DateTime<Utc>, poll: Duration) -> Decision {
        let cursor = self.cursor(job);
        let after = match self.jobs.get(job) {
            Some(js) => js.after_due(&cursor, &self.history),
            None => return Decision::Idle,
        };
        let last_refresh = self.last_refresh;
        let Some(js) = self.jobs.get_mut(job) else {
            return Decision::Idle;
        };
        if js.running.is_some() {
            self.set_wake(job, None);
            return Decision::Idle;
        }
        let paused = js.paused(&cursor);
        if paused && js.next_tick.is_some_and(|t| t <= now) {
            tracing::info!(job, "tick skipped: the job is paused by a definite failure");
            js.next_tick = js.spec.next_tick_after(now);
            js.catching_up = false;
        }
        let data_due = js.data_due();
        let reason = if let Some((by, _)) = &js.manual {
            Some(Reason::Manual { by: by.clone() })
        } else if paused {
            None
        } else if let Some(from) = js.next_tick.filter(|t| *t <= now) {
            let tick = js.spec.latest_tick(from, now).unwrap_or(from);
            Some(if js.catching_up {
                Reason::CatchUp { tick }
            } else if js.spec.is_cron_tick(tick) {
                Reason::Cron { tick }
            } else {
                Reason::Every { tick }
            })
        } else if data_due.is_some_and(|t| t <= now) {
            Some(Reason::NewData)
        } else {
            after.map(|job| Reason::After { job })
        };
        let Some(reason) = reason else {
            // A paused job still wakes at its ticks, to let them pass unrun.
            let next = if paused {
                js.next_tick
            } else {
                [js.next_tick, data_due].into_iter().flatten().min()
            };
            self.set_wake(job, next);
            return Decision::Idle;
        };
        if let Some(remote) = js.remote(&cursor) {
            // Only one run at a time per job, across daemons: wait for the other
            // one's run to end, or for its lease to lapse.
            let at = remote.lease_until;
            if at <= now && last_refresh != Some(now) {
                return Decision::Reload;
            }
            let at = if at <= now { plus(now, poll) } else { at };
            self.set_wake(job, Some(at));
            return Decision::Idle;
        }
        let params = match &reason {
            Reason::Manual { .. } => js
                .manual
                .as_ref()
                .map(|(_, p)| p.clone())
                .unwrap_or_default(),
            _ => BTreeMap::new(),
        };
        Decision::Start(Box::new(Plan {
            job: job.to_string(),
            reason,
            params,
            runner: js.job.clone(),
            inputs: js.spec.new_data_inputs(),
            spec: js.spec.clone(),
        }))
    }
}
