//! Time as the scheduler sees it. Everything that waits goes through a [`Clock`] so
//! tests drive time by hand instead of sleeping.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::sync::oneshot;

/// The scheduler's source of "now" and of timed waits.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
    /// Completes once `now() >= at` (immediately if that already holds).
    fn sleep_until(&self, at: DateTime<Utc>) -> BoxFuture<'static, ()>;
}

/// `t + d`, saturating instead of panicking: a far-away wake-up is as good as never.
pub(crate) fn plus(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(d)
        .ok()
        .and_then(|d| t.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Wall-clock time with tokio timers.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, at: DateTime<Utc>) -> BoxFuture<'static, ()> {
        let wait = (at - Utc::now()).to_std().unwrap_or_default();
        tokio::time::sleep(wait).boxed()
    }
}

/// A clock that only moves when told to; sleeps wake as soon as `set`/`advance`
/// passes their deadline, so tests are deterministic and never wait for real.
#[derive(Debug, Clone)]
pub struct ManualClock {
    inner: Arc<Mutex<ManualInner>>,
}

#[derive(Debug)]
struct ManualInner {
    now: DateTime<Utc>,
    sleepers: Vec<(DateTime<Utc>, oneshot::Sender<()>)>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> ManualClock {
        ManualClock {
            inner: Arc::new(Mutex::new(ManualInner {
                now: start,
                sleepers: Vec::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ManualInner> {
        // A panic while holding this lock cannot leave the time half-written.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves time to `t` (never backwards) and wakes every sleep that is now due.
    pub fn set(&self, t: DateTime<Utc>) {
        let due = {
            let mut inner = self.lock();
            if t > inner.now {
                inner.now = t;
            }
            let now = inner.now;
            let (due, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut inner.sleepers)
                .into_iter()
                .partition(|(at, _)| *at <= now);
            inner.sleepers = keep;
            due
        };
        for (_, tx) in due {
            let _ = tx.send(());
        }
    }

    pub fn advance(&self, d: Duration) {
        let now = self.now();
        self.set(plus(now, d));
    }

    /// The earliest pending sleep, so a test can jump straight to it.
    pub fn next_wake(&self) -> Option<DateTime<Utc>> {
        let mut inner = self.lock();
        inner.sleepers.retain(|(_, tx)| !tx.is_closed());
        inner.sleepers.iter().map(|(at, _)| *at).min()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        self.lock().now
    }

    fn sleep_until(&self, at: DateTime<Utc>) -> BoxFuture<'static, ()> {
        let mut inner = self.lock();
        if at <= inner.now {
            return futures::future::ready(()).boxed();
        }
        // The loop drops its sleep every iteration; prune those so waiters don't pile up.
        inner.sleepers.retain(|(_, tx)| !tx.is_closed());
        let (tx, rx) = oneshot::channel();
        inner.sleepers.push((at, tx));
        async move {
            let _ = rx.await;
        }
        .boxed()
    }
}
