//! The one landing loop every source runs through.
//!
//! A [`Source`] reads changes and buffers them per table; this loop decides when
//! they land and what happens around a landing:
//!
//! ```text
//!            ┌──────────── next(wait) ◄───────────────┐
//!  Source ───┤ Buffered(n) ─► flush policy: rows or age? ─► commit ─► metrics ─► compaction due?
//!            │ Barrier(b)  ─► commit, compaction finished ─► apply(b)   (schema change,
//!            │                                                          truncate, rebalance,
//!            │ Idle        ─► caught up? ─► last commit, return          reconnect)
//!            └ stop flag   ─► last commit, compaction finished, return
//! ```
//!
//! * **Flush policy** ([`Policy`]): a commit once `flush_rows` rows are buffered or
//!   the oldest buffered change is `flush_interval_ms` old (the freshness bound),
//!   whichever comes first.
//! * **Barriers**: what must meet the lake with nothing buffered before it and no
//!   compaction of the old shape in flight — a schema change, a truncate, a Kafka
//!   rebalance, a reconnect. The loop makes that true, then hands the barrier back
//!   to its source ([`Source::apply`]). A schema change itself is applied by one
//!   function whatever the source ([`evolve::evolve_in_place`]).
//! * **Compaction** ([`compaction::Compactor`]): after each commit, the table whose
//!   history tail outgrew a fifth of its current base is compacted in the
//!   background, one at a time.
//!
//! Exactly once is the source's part of the contract: its [`Source::commit`] lands
//! each table's rows with the position just after them in the same Delta commit, and
//! skips on restart what a table already has. Nothing here keeps state outside the
//! lake.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use tidemark_core::schema::TableSchema;
use tidemark_lake::Warehouse;
use tidemark_mysql::connect::Source as MySql;
use tracing::info;

pub mod compaction;
pub mod evolve;

pub use compaction::{Compactor, Pace};

/// Tail rows (history landed since the current table's mark) that make a compaction
/// due, unless the base is larger (then a tenth of it).
pub const COMPACT_MIN_ROWS: u64 = tidemark_lake::mor::COMPACT_MIN_ROWS;

/// What a source's [`Source::next`] found.
#[derive(Debug)]
pub enum Item<B> {
    /// `n` rows (or other things to land, such as dead letters, when `n` is 0) were
    /// buffered: the flush policy's clock starts.
    Buffered(usize),
    /// Something was read that needs no landing of its own (a change of a table not
    /// selected, a replay skipped, a heartbeat).
    Read,
    /// Nothing arrived in the time given.
    Idle,
    /// Land everything buffered first (and, with `all_positions`, move every table's
    /// position), let a running compaction finish, then [`Source::apply`] `then`.
    Barrier {
        /// Whether the commit before it also moves idle tables' positions (a
        /// reconnect resumes from the oldest of them).
        all_positions: bool,
        /// The source's own item.
        then: B,
    },
}

/// What one table's commit landed, for the metrics and new-data triggers.
#[derive(Debug, Clone)]
pub struct Landed {
    /// The table as its source names it (`db.table`).
    pub table: String,
    /// Its SQL name in the lake (`schema.table`).
    pub sql_name: String,
    /// Rows committed.
    pub rows: usize,
    /// Source commit instant of the newest of them (micros).
    pub last_source_ts_us: Option<i64>,
    /// Their `_ingest_ts` (micros).
    pub ingest_us: Option<i64>,
}

/// One source of changes, as the landing loop drives it: the binlog
/// ([`crate::sources::binlog`]), or Debezium / DMS events from Kafka or files
/// ([`crate::sources::events`]).
///
/// The methods return `Send` futures so that a pipeline can be spawned (the daemon
/// does).
pub trait Source: Send {
    /// The source's own barrier items (see [`Item::Barrier`]).
    type Barrier: Send;

    /// How logs and metrics name it (`[sources.NAME]`, `[streams.NAME]`).
    fn name(&self) -> &str;

    /// Wait at most `wait` for the next thing the source has, and buffer its rows in
    /// the tables they belong to. An error stops this pipeline (the others go on);
    /// it resumes from the lake's positions when started again.
    fn next(&mut self, wait: Duration) -> impl Future<Output = Result<Item<Self::Barrier>>> + Send;

    /// Land what is buffered: every table with rows in one commit each, with the
    /// position just after them; with `all_positions`, tables whose position merely
    /// moved too. `None` when there was nothing to commit.
    fn commit(
        &mut self,
        all_positions: bool,
    ) -> impl Future<Output = Result<Option<Vec<Landed>>>> + Send;

    /// Apply a barrier: nothing is buffered and no compaction runs. Returns what
    /// came of it, as [`Source::next`] does (a change that waited for its table to
    /// evolve is buffered now, say; a message read with a rebalance may be a
    /// barrier of its own).
    fn apply(
        &mut self,
        barrier: Self::Barrier,
    ) -> impl Future<Output = Result<Item<Self::Barrier>>> + Send;

    /// With `until_caught_up`, asked when nothing is buffered and nothing arrived:
    /// has everything there was when the run began been read?
    fn caught_up(&mut self) -> impl Future<Output = Result<bool>> + Send;

    /// After the last commit of a caught-up run: an error says what did not land
    /// (parked tables), so a backfill does not look complete when it is not.
    fn finished(&self) -> Result<()> {
        info!(source = %self.name(), "caught up");
        Ok(())
    }

    /// The tables, with their compaction pace.
    fn paced(&mut self) -> Vec<(&Arc<TableSchema>, &mut Pace)>;
}

/// When buffered changes land.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// The freshness bound: the oldest buffered change lands within it.
    pub interval: Duration,
    /// A commit once this many rows are buffered.
    pub flush_rows: usize,
    /// Return once the source has caught up (backfills, tests).
    pub until_caught_up: bool,
    /// How often one more table gets the full maintenance (bin-pack, checkpoint,
    /// VACUUM); `None`: compaction only.
    pub maintain_every: Option<Duration>,
}

/// Run `source` through the landing loop until `stop` (the commit in flight
/// finishes first) or, with `until_caught_up`, until it has caught up.
pub async fn land<S: Source>(
    source: &mut S,
    policy: Policy,
    wh: &Warehouse,
    stop: Arc<AtomicBool>,
    metrics: crate::metrics::Shared,
) -> Result<()> {
    let name = source.name().to_string();
    let mut l = Loop {
        name: name.clone(),
        metrics,
        compactor: Compactor::new(wh.clone(), &name, policy.maintain_every),
        buffered_rows: 0,
        oldest: None,
    };
    loop {
        if stop.load(Ordering::SeqCst) {
            l.commit(source, true).await?;
            l.compactor.finish(source.paced()).await;
            info!(source = %name, "stopped cleanly");
            return Ok(());
        }
        let wait = match l.oldest {
            Some(t) => policy.interval.saturating_sub(t.elapsed()),
            // Nothing buffered: a backfill asks soon whether it has caught up.
            None if policy.until_caught_up => policy.interval.min(Duration::from_millis(200)),
            None => policy.interval,
        };
        let mut item = source.next(wait.max(Duration::from_millis(1))).await?;
        while let Item::Barrier {
            all_positions,
            then,
        } = item
        {
            l.commit(source, all_positions).await?;
            l.compactor.finish(source.paced()).await;
            item = source.apply(then).await?;
        }
        match item {
            Item::Buffered(n) => l.buffered(n),
            Item::Read | Item::Barrier { .. } => {}
            Item::Idle if l.oldest.is_none() => {
                if policy.until_caught_up && source.caught_up().await? {
                    l.commit(source, true).await?;
                    l.compactor.finish(source.paced()).await;
                    return source.finished();
                }
                // Idle tables' positions move now and then, so a restart need not
                // re-read a long quiet stretch for them.
                l.commit(source, false).await?;
            }
            Item::Idle => {}
        }
        let due = l.oldest.is_some_and(|t| t.elapsed() >= policy.interval);
        if l.buffered_rows >= policy.flush_rows.max(1) || due {
            l.commit(source, false).await?;
        }
    }
}

/// The loop's own state.
struct Loop {
    name: String,
    metrics: crate::metrics::Shared,
    compactor: Compactor,
    buffered_rows: usize,
    /// When the oldest buffered change arrived.
    oldest: Option<Instant>,
}

impl Loop {
    fn buffered(&mut self, n: usize) {
        self.buffered_rows += n;
        self.oldest.get_or_insert_with(Instant::now);
    }

    /// Commit through the source, record what landed, start a compaction if one is
    /// due.
    async fn commit<S: Source>(&mut self, source: &mut S, all_positions: bool) -> Result<()> {
        let started = Instant::now();
        let landed = source.commit(all_positions).await?;
        self.buffered_rows = 0;
        self.oldest = None;
        if let Some(landed) = landed {
            let mut m = self.metrics.lock().expect("metrics lock");
            for l in &landed {
                let tm = m.table(&self.name, &l.table);
                tm.changes += l.rows as u64;
                if l.rows > 0 {
                    tm.last_source_ts_us = l.last_source_ts_us;
                    tm.last_ingest_us = l.ingest_us;
                    m.landed(&l.sql_name);
                }
            }
            m.committed(&self.name, started.elapsed().as_secs_f64());
        }
        self.compactor.tick(source.paced()).await;
        Ok(())
    }
}

/// Whether the source's config selects `db.table` (databases, include, exclude).
pub fn selects(source: &MySql, db: &str, table: &str) -> Result<bool> {
    let cfg = &source.config;
    Ok(
        (cfg.databases.is_empty() || cfg.databases.iter().any(|d| d == db))
            && cfg.table_filter()?.matches(db, table),
    )
}
