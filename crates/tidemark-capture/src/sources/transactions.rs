//! Debezium's transaction boundaries (`provide.transaction.metadata`): a table's
//! changes of one source transaction land in one commit, never split across two.
//!
//! With transaction metadata on, every change event names its transaction
//! (`transaction.id`), and the connector writes an `END` message for each
//! transaction to the transaction topic, counting the transaction's events per table
//! (`data_collections`). The topics are read side by side, so the `END` may come
//! before or after the events it counts, and a table's events may be spread over
//! several partitions.
//!
//! ```text
//!  change of T in txn X ─► count (X, T) ─► hold in T's queue for its partition
//!  END of X ──────────────► expected counts per table
//!                                │
//!  release: X is complete for T (END read, every event of X for T read) and, in
//!  each of T's queues, X's events are at the front ─► all of them, in one go,
//!  to the landing path (one commit)
//! ```
//!
//! A table's events in one partition keep their order: everything read after a held
//! event of the same table and partition waits behind it (a truncate too), so a
//! later transaction never lands before an earlier one.
//!
//! Positions stay exact because the consumer group's offsets are the only thing
//! held back: [`Transactions::limits`] keeps each data partition's committed offset
//! at its first held event, and the transaction topic's at the first `END` still
//! needed, so a restart reads both again. Tables' own positions (in the lake) move
//! only with what lands, as always; a held event already landed before a crash is
//! recognised as such and is not held again.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use tidemark_events::{ChangeEvent, TransactionBoundary, Truncate};

use crate::sources::kafka::Msg;

/// An `END` read this long ago with nothing of its transaction held no longer holds
/// the transaction topic's group offset back: a transaction of tables this stream
/// does not read (or whose events landed before a restart) must not make every
/// restart read the transaction topic from further back.
const PIN: Duration = Duration::from_secs(600);

/// Transactions remembered at most; beyond it the oldest with nothing held are
/// forgotten (a transaction topic shared with tables the stream does not read).
const REMEMBERED: usize = 100_000;

/// A held change: a row change, or a truncate waiting behind the table's held rows.
#[derive(Debug)]
pub enum Held {
    /// A row change.
    Row(Box<ChangeEvent>),
    /// Debezium's truncate (a transaction of its own).
    Truncate(Truncate),
}

impl Held {
    /// Debezium's transaction id of a row change.
    pub fn transaction(&self) -> Option<&str> {
        match self {
            Held::Row(ev) => ev.transaction.as_deref(),
            Held::Truncate(_) => None,
        }
    }
}

/// A held change: the message, the change, and since when it waits.
type Waiting = (Msg, Held, Instant);

/// What is known of one source transaction.
#[derive(Debug, Default)]
struct Txn {
    /// Its `END`: where it was read, events per table, events in all.
    end: Option<End>,
    /// Events read, per table (`db.table`).
    seen: HashMap<String, u64>,
    /// Events held, per table.
    held: HashMap<String, usize>,
}

#[derive(Debug)]
struct End {
    topic: String,
    partition: i32,
    offset: i64,
    collections: Vec<(String, u64)>,
    total: Option<u64>,
    read_at: Instant,
}

/// The held changes of one stream, and what is known of their transactions.
#[derive(Debug, Default)]
pub struct Transactions {
    txns: HashMap<String, Txn>,
    /// Transaction ids in the order first heard of, for [`REMEMBERED`].
    order: VecDeque<String>,
    /// Per table and partition name, the changes held, in read order.
    queues: BTreeMap<(String, String), VecDeque<Waiting>>,
    stall_said: Option<Instant>,
    forgot_said: Option<Instant>,
}

impl Transactions {
    /// Does `table` have changes held in `partition` (so what comes next there
    /// waits behind them)?
    pub fn holding(&self, table: &str, partition: &str) -> bool {
        self.queues
            .get(&(table.to_string(), partition.to_string()))
            .is_some_and(|q| !q.is_empty())
    }

    /// Changes held now.
    pub fn held(&self) -> usize {
        self.queues.values().map(VecDeque::len).sum()
    }

    fn txn(&mut self, id: &str) -> &mut Txn {
        if !self.txns.contains_key(id) {
            self.order.push_back(id.to_string());
            self.forget_beyond_limit();
        }
        self.txns.entry(id.to_string()).or_default()
    }

    /// An event of transaction `id` for `table` was read (held or not: one landed
    /// before, or of a table not landed, counts as much toward the `END`).
    pub fn count(&mut self, id: &str, table: &str) {
        *self.txn(id).seen.entry(table.to_string()).or_default() += 1;
    }

    /// Hold a change of `table` (already counted) behind what its partition holds.
    pub fn hold(&mut self, msg: Msg, table: String, change: Held) {
        if let Some(id) = change.transaction() {
            let id = id.to_string();
            *self.txn(&id).held.entry(table.clone()).or_default() += 1;
        }
        self.queues
            .entry((table, msg.partition_name()))
            .or_default()
            .push_back((msg, change, Instant::now()));
    }

    /// Debezium's `END` of a transaction, read at `msg`.
    pub fn end(&mut self, msg: &Msg, b: TransactionBoundary) {
        if b.status != "END" {
            return;
        }
        self.txn(&b.id).end = Some(End {
            topic: msg.topic.clone(),
            partition: msg.partition,
            offset: msg.offset,
            collections: b.collections,
            total: b.event_count,
            read_at: Instant::now(),
        });
    }

    /// Has every event of transaction `id` for `table` been read?
    fn complete(&self, id: &str, table: &str) -> bool {
        let Some(t) = self.txns.get(id) else {
            return false;
        };
        let Some(end) = &t.end else {
            return false;
        };
        let seen = |table: &str| t.seen.get(table).copied().unwrap_or(0);
        match end.collections.iter().find(|(c, _)| c == table) {
            Some((_, n)) => seen(table) >= *n,
            // An END without per-table counts: every event of the transaction.
            None if end.collections.is_empty() => {
                end.total.is_none_or(|n| t.seen.values().sum::<u64>() >= n)
            }
            // The END does not count this table: nothing more of it to wait for.
            None => true,
        }
    }

    /// The changes that may land now, each table's together and in read order per
    /// partition: whole transactions (complete, and first in each of the table's
    /// queues that holds them), and whatever follows them that is not in a
    /// transaction.
    pub fn release(&mut self) -> Vec<(Msg, Held)> {
        let mut out: Vec<(Msg, Held)> = Vec::new();
        loop {
            let mut moved = false;
            let keys: Vec<(String, String)> = self.queues.keys().cloned().collect();
            for key in keys {
                let Some(front) = self.queues.get(&key).and_then(|q| q.front()) else {
                    continue;
                };
                let table = key.0.clone();
                let Some(id) = front.1.transaction().map(str::to_string) else {
                    // Not in a transaction (a truncate, a snapshot read): it waited
                    // only for what was before it.
                    let q = self.queues.get_mut(&key).expect("a queue with a front");
                    let (msg, held, _) = q.pop_front().expect("a front");
                    out.push((msg, held));
                    moved = true;
                    continue;
                };
                if !self.complete(&id, &table) {
                    continue;
                }
                // Every held event of the transaction for the table must be at the
                // front of its queue (a partition's earlier transaction, incomplete,
                // keeps the whole transaction waiting).
                let runs: Vec<((String, String), usize)> = self
                    .queues
                    .iter()
                    .filter(|((t, _), _)| *t == table)
                    .map(|(k, q)| {
                        let run = q
                            .iter()
                            .take_while(|(_, h, _)| h.transaction() == Some(id.as_str()))
                            .count();
                        (k.clone(), run)
                    })
                    .filter(|(_, run)| *run > 0)
                    .collect();
                let at_front: usize = runs.iter().map(|(_, n)| n).sum();
                let held = self
                    .txns
                    .get(&id)
                    .and_then(|t| t.held.get(&table))
                    .copied()
                    .unwrap_or(0);
                if at_front < held {
                    continue;
                }
                for (k, n) in runs {
                    let q = self.queues.get_mut(&k).expect("queue");
                    out.extend(q.drain(..n).map(|(m, h, _)| (m, h)));
                }
                if let Some(t) = self.txns.get_mut(&id) {
                    t.held.remove(&table);
                }
                moved = true;
            }
            if !moved {
                break;
            }
        }
        self.queues.retain(|_, q| !q.is_empty());
        // Each table's changes together: a barrier one of them raises (a schema
        // change) commits what came before it, which must not be half of another
        // table's transaction. The sort is stable, so each partition keeps its order.
        out.sort_by_key(|a| table_of(&a.1));
        out
    }

    /// Forget transactions nothing more is expected of: every table the stream lands
    /// (`lands`) has had all its events read, and nothing is held.
    pub fn prune(&mut self, lands: impl Fn(&str) -> bool) {
        self.txns.retain(|_, t| {
            let Some(end) = &t.end else {
                return true;
            };
            if t.held.values().any(|n| *n > 0) {
                return true;
            }
            let seen = |table: &str| t.seen.get(table).copied().unwrap_or(0);
            let done = if end.collections.is_empty() {
                end.total.is_none_or(|n| t.seen.values().sum::<u64>() >= n)
            } else {
                end.collections
                    .iter()
                    .all(|(table, n)| !lands(table) || seen(table) >= *n)
            };
            !done
        });
        if self.order.len() > 2 * self.txns.len() + 1024 {
            self.order.retain(|id| self.txns.contains_key(id));
        }
    }

    fn forget_beyond_limit(&mut self) {
        let mut forgot = 0;
        let mut kept = VecDeque::new();
        while self.txns.len() > REMEMBERED {
            let Some(id) = self.order.pop_front() else {
                break;
            };
            match self.txns.get(&id) {
                Some(t) if t.held.values().any(|n| *n > 0) => kept.push_back(id),
                Some(_) => {
                    self.txns.remove(&id);
                    forgot += 1;
                }
                None => {}
            }
        }
        while let Some(id) = kept.pop_back() {
            self.order.push_front(id);
        }
        if forgot > 0
            && self
                .forgot_said
                .is_none_or(|t| t.elapsed() > Duration::from_secs(3600))
        {
            tracing::warn!(forgot, remembered = REMEMBERED,
                "forgot the oldest transactions of the transaction topic with nothing held (its END counts tables this stream does not read, or their events never came)");
            self.forgot_said = Some(Instant::now());
        }
    }

    /// The highest offset the consumer group may commit per partition: each data
    /// partition's first held change, and the transaction topic's first `END` still
    /// needed (events of it held, or read less than [`PIN`] ago and not all of its
    /// events read), so a restart reads them again.
    pub fn limits(&self) -> BTreeMap<(String, i32), i64> {
        let mut out: BTreeMap<(String, i32), i64> = BTreeMap::new();
        let mut lower = |topic: &str, p: i32, offset: i64| {
            let at = out.entry((topic.to_string(), p)).or_insert(offset);
            *at = (*at).min(offset);
        };
        for q in self.queues.values() {
            if let Some((m, _, _)) = q.front() {
                lower(&m.topic, m.partition, m.offset);
            }
        }
        for t in self.txns.values() {
            if let Some(e) = &t.end {
                if t.held.values().any(|n| *n > 0) || e.read_at.elapsed() < PIN {
                    lower(&e.topic, e.partition, e.offset);
                }
            }
        }
        out
    }

    /// The partitions were taken away: what is held of them is the new owner's to
    /// land, and no longer counts here.
    pub fn revoke(&mut self, partition: &str) {
        let keys: Vec<_> = self
            .queues
            .keys()
            .filter(|(_, p)| p == partition)
            .cloned()
            .collect();
        for key in keys {
            for (_, h, _) in self.queues.remove(&key).unwrap_or_default() {
                if let Some(t) = h.transaction().and_then(|id| self.txns.get_mut(id)) {
                    if let Some(n) = t.held.get_mut(&key.0) {
                        *n = n.saturating_sub(1);
                    }
                    if let Some(n) = t.seen.get_mut(&key.0) {
                        *n = n.saturating_sub(1);
                    }
                }
            }
        }
    }

    /// Changes held over a minute, described for a warning (at most once a minute).
    pub fn stalled(&mut self) -> Option<String> {
        if self
            .stall_said
            .is_some_and(|t| t.elapsed() < Duration::from_secs(60))
        {
            return None;
        }
        let waits = self.waiting(Duration::from_secs(60));
        if waits.is_empty() {
            return None;
        }
        self.stall_said = Some(Instant::now());
        Some(waits.join("; "))
    }

    /// Each queue whose first change has waited `older_than`: the table, partition,
    /// position, and what its transaction waits for.
    pub fn waiting(&self, older_than: Duration) -> Vec<String> {
        let mut waits = Vec::new();
        for ((table, part), q) in &self.queues {
            let Some((m, h, since)) = q.front() else {
                continue;
            };
            if since.elapsed() < older_than {
                continue;
            }
            let id = h.transaction().unwrap_or("-");
            let why = match self.txns.get(id).map(|t| (&t.end, t.seen.get(table))) {
                Some((None, _)) | None => "its END has not been read".to_string(),
                Some((Some(e), seen)) => format!(
                    "{} of its {} events for the table read",
                    seen.copied().unwrap_or(0),
                    e.collections
                        .iter()
                        .find(|(c, _)| c == table)
                        .map_or_else(|| "?".to_string(), |(_, n)| n.to_string())
                ),
            };
            waits.push(format!(
                "{table} in {part} from {} ({} held; transaction {id}: {why})",
                m.position(),
                q.len()
            ));
        }
        waits
    }
}

fn table_of(h: &Held) -> String {
    match h {
        Held::Row(ev) => ev.source_table(),
        Held::Truncate(t) => format!("{}.{}", t.db, t.table),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidemark_core::change::Op;
    use tidemark_events::Encoding;

    fn msg(topic: &str, partition: i32, offset: i64) -> Msg {
        Msg {
            topic: topic.into(),
            partition,
            offset,
            key: None,
            value: None,
            file_line: false,
        }
    }

    fn ev(table: &str, txn: &str) -> Held {
        Held::Row(Box::new(ChangeEvent {
            db: "shop".into(),
            table: table.into(),
            op: Op::Create,
            before: None,
            after: None,
            source_ts_us: 0,
            source_pos: String::new(),
            message_pos: String::new(),
            txn_id: Some(txn.into()),
            transaction: Some(txn.into()),
            snapshot: false,
            dedup_key: String::new(),
            origin: None,
            encoding: Encoding::DMS,
            definition: None,
        }))
    }

    fn end(id: &str, collections: &[(&str, u64)]) -> TransactionBoundary {
        TransactionBoundary {
            status: "END".into(),
            id: id.into(),
            event_count: Some(collections.iter().map(|(_, n)| n).sum()),
            collections: collections
                .iter()
                .map(|(c, n)| (c.to_string(), *n))
                .collect(),
        }
    }

    fn read(tx: &mut Transactions, topic: &str, p: i32, o: i64, table: &str, id: &str) {
        tx.count(id, &format!("shop.{table}"));
        tx.hold(msg(topic, p, o), format!("shop.{table}"), ev(table, id));
    }

    fn offsets(out: &[(Msg, Held)]) -> Vec<(i32, i64)> {
        out.iter().map(|(m, _)| (m.partition, m.offset)).collect()
    }

    #[test]
    fn a_transaction_over_two_partitions_is_released_whole_once_its_end_is_read() {
        let mut tx = Transactions::default();
        read(&mut tx, "t", 0, 0, "a", "x");
        read(&mut tx, "t", 1, 0, "a", "x");
        assert!(tx.release().is_empty(), "no END yet");
        tx.end(&msg("txn", 0, 5), end("x", &[("shop.a", 3)]));
        assert!(tx.release().is_empty(), "two of three events read");
        assert_eq!(tx.limits()[&("t".to_string(), 0)], 0);
        assert_eq!(tx.limits()[&("txn".to_string(), 0)], 5);
        read(&mut tx, "t", 1, 1, "a", "x");
        assert_eq!(offsets(&tx.release()), vec![(0, 0), (1, 0), (1, 1)]);
        assert_eq!(tx.held(), 0);
        tx.prune(|_| true);
        assert!(tx.txns.is_empty());
    }

    #[test]
    fn an_earlier_incomplete_transaction_holds_later_ones_of_its_table_and_partition() {
        let mut tx = Transactions::default();
        read(&mut tx, "t", 0, 0, "a", "x");
        read(&mut tx, "t", 0, 1, "a", "y");
        read(&mut tx, "u", 0, 0, "b", "y");
        tx.end(&msg("txn", 0, 1), end("y", &[("shop.a", 1), ("shop.b", 1)]));
        // y is complete, but x is before it in a's partition; b lands its part.
        let out = tx.release();
        assert_eq!(offsets(&out), vec![(0, 0)]);
        assert_eq!(out[0].0.topic, "u");
        tx.end(&msg("txn", 0, 0), end("x", &[("shop.a", 1)]));
        let out = tx.release();
        assert_eq!(offsets(&out), vec![(0, 0), (0, 1)]);
    }

    #[test]
    fn the_end_may_come_first_and_a_revoke_forgets_the_partition() {
        let mut tx = Transactions::default();
        tx.end(&msg("txn", 0, 3), end("x", &[("shop.a", 2)]));
        read(&mut tx, "t", 0, 7, "a", "x");
        read(&mut tx, "t", 1, 9, "a", "x");
        let out = tx.release();
        assert_eq!(out.len(), 2);
        read(&mut tx, "t", 0, 8, "a", "z");
        tx.revoke("t/0");
        assert_eq!(tx.held(), 0);
        assert!(tx.txns["z"].seen.get("shop.a").is_none_or(|n| *n == 0));
    }
}
