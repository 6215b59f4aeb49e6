//! The scheduler of tidemark's daemon.
//!
//! The daemon composes: capture keeps MySQL tables as Delta tables and commits new
//! versions; this scheduler triggers jobs (models, publish, features, maintenance,
//! SQL) on cron, on an interval, on new commits of their inputs, after other jobs,
//! or by hand; every run is recorded in `tidemark.runs` through a [`RunStore`]; the
//! HTTP API and the CLI drive and observe it through a [`Handle`]. It replaces the
//! Lambda triggers and App Runner cron jobs of the AWS deployment.
//!
//! The scheduler knows nothing about what jobs do: kinds register in a [`Registry`]
//! and build a [`Job`] from each `[jobs.NAME]` table ([`JobSpec`]).
//!
//! # One loop
//!
//! A single task keeps the instant each job next needs attention in an ordered set
//! and sleeps until the earliest of them, an event (manual trigger, run end, input
//! notification, reload) or the next input poll (only when some job watches inputs).
//! A thousand idle cron jobs cost one sleeping task. Runs are spawned tasks that
//! report their end over a channel.
//!
//! # Exactly-once rules
//!
//! * **A trigger is consumed when, and only when, its run is claimed.** A claim is a
//!   conditional create of run `seq = last seq + 1` of the job in the store, and it
//!   carries the trigger's cursor: the cron/every tick it serves and the input
//!   versions it read. Two daemons on one warehouse race for the same `(job, seq)`;
//!   the loser reloads the history and re-derives its cursors, so each tick runs once
//!   in total. All cursors are derived from run records, so they survive restarts.
//! * **One run at a time per job**: in-process by state; across daemons, a job whose
//!   latest record is Running elsewhere is not started until that run ends or its
//!   lease lapses (checked when the lease would expire).
//! * **What a daemon knows of the others** comes from the store: everything at start,
//!   again whenever one of its claims loses a race, and whenever it waits on a run
//!   held elsewhere (re-read when that run's lease would lapse). It does not follow
//!   the other daemons' runs otherwise, so an `after` job is triggered by the daemon
//!   that saw its upstream succeed.
//! * **Leases**: a run renews its lease every `lease / 3`. A Running record whose
//!   lease lapsed is marked Abandoned (at start, and whenever another daemon's run
//!   is checked). **An abandoned run consumes nothing**: its tick and input versions
//!   do not count, so the next trigger covers them again (a cron job catches the tick
//!   up at the next start per `catch_up`; a new-data job sees the versions as
//!   unconsumed). A job's output commit is its own transaction, so a re-run after an
//!   abandoned one that did commit is the job's to make idempotent. Runs cancelled
//!   by shutdown or removal that did not succeed are recorded Abandoned too, for the
//!   same reason. A run whose end cannot be written is left Running and reaped later.
//! * **Failed runs consume their trigger** (otherwise a failing job would be retried
//!   at every poll): transient errors are retried with exponential backoff up to
//!   `retries` attempts within the run; a definite error pauses the job — it is not
//!   triggered automatically until a manual trigger or a changed spec (hot reload).
//!   The pause is read from the store, so a restart keeps it.
//!
//! # Triggers
//!
//! * **cron**: ticks in the job's time zone (DST-aware, via croner and chrono-tz).
//!   At start, ticks missed since the last served one become one `CatchUp` run for
//!   the latest of them (`catch_up = "once"`) or are dropped (`"skip"`). A job never
//!   run before starts at the next tick after now. Ticks that fall due while the job
//!   is running collapse into one run, for the latest tick, after it ends.
//! * **every**: ticks at `last tick + interval`; a job never run first ticks at
//!   `start + interval`. Missed ticks are handled as for cron.
//! * **new_data**: fires when an input's version exceeds the one consumed by the last
//!   (non-abandoned) claimed run of the job, or an input appeared — so a job that
//!   never ran fires once its inputs exist. It waits `debounce` after the last change
//!   seen, but no more than `freshness` after the first unconsumed change. Inputs
//!   are polled every second (configurable) and on [`Handle::notify`]; every run of
//!   a job with inputs, whatever its reason, captures and consumes their versions.
//! * **after**: fires once each listed job succeeded after this job's last claimed
//!   run started (or after the scheduler started, for a job that never ran).
//! * **manual**: always possible ([`Handle::trigger`], which is async: it answers
//!   with the id of the claimed run, or [`QUEUED`] when the job is running, in which
//!   case it runs once after the current run, however many triggers came).
//!
//! When several are due at once: manual, then ticks, then new data, then after; the
//! run consumes what it captured, and what is still due runs next.

pub mod clock;
pub mod inputs;
pub mod job;
pub mod scheduler;
pub mod spec;
mod state;
pub mod store;

pub use clock::{Clock, ManualClock, SystemClock};
pub use inputs::{Inputs, MemoryInputs};
pub use job::{Job, JobError, JobKind, Reason, Registry, RunContext, RunOutput};
pub use scheduler::{Handle, JobStatus, Scheduler, TriggerError, QUEUED};
pub use spec::{parse_jobs, validate, CatchUp, ConfigError, JobSpec, RetryPolicy, Trigger};
pub use store::{MemoryRunStore, Outcome, RunRecord, RunStore, StoreError};
