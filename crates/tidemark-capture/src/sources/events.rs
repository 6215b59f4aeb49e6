//! Capture from event streams (`[streams.*]`): change events that Debezium or
//! AWS DMS captured, read from Kafka or from JSON-lines files, landed on the same
//! path as binlog capture — each table's history log, with its current table derived
//! from it (merge-on-read) and compacted in the background.
//!
//! Exactly once. Kafka and both producers deliver at least once; tidemark makes the
//! result exactly once with two checks per table and partition, both carried in the
//! table's history commits (`SourceState::partitions`), in the same Delta commit as
//! the rows:
//!
//! * the next offset: a message below it was landed before (a redelivery after a
//!   crash, a file read again);
//! * the binlog position of the newest streamed change: a change at or before it is a
//!   replay the producer sent under new offsets (Debezium after a restart).
//!
//! The consumer group's offsets are committed only after the lake has the data, so
//! they never run ahead of it.
//!
//! Bad input: a message that does not decode, or whose values do not fit its table,
//! goes to `tidemark.dead_letters` (raw key and value, where it came from, why) and the
//! partition keeps flowing.
//!
//! Scale-out: the workers of one consumer group share the partitions and write the
//! same tables. A table commit sets only the committing worker's partitions in the
//! table's newest state, as a compare-and-swap (`TableWriter::append_history_shared`);
//! a rebalance drops what is pending for the partitions taken away (their new owner
//! lands them from the lake's positions).
//!
//! Transactions: with `transaction_topic` (Debezium's transaction metadata), a
//! table's changes of one source transaction are held until the transaction's END
//! has been read and every change it counts for the table with it, then buffered
//! together, so they land in one commit (`crate::sources::transactions`).
//!
//! Table definitions ([`Catalog`]): from the MySQL source named in `schema_from`
//! (its information_schema), or, without one, from the messages themselves: the
//! Kafka Connect schema of Debezium's JSON envelope, or the Avro schema a schema
//! registry holds for the message (`tidemark_events::connect` maps either to MySQL
//! types). The message key's schema names the primary key.
//!
//! Schema changes: with `schema_from`, an event with a column its table lacks means
//! the table changed at the source, and the table evolves in place to the definition
//! the source has now. Without it, an event whose schema differs from the table's
//! (a column added, dropped or widened) evolves the table to the event's definition,
//! the added columns' defaults taken from the schema. Both go through the same
//! `landing::evolve` as binlog capture's DDL; what cannot be applied in place sends
//! that table's events to the dead letters, saying why, and the other tables flow.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::{FutureExt, StreamExt};
use tidemark_core::change::ChangeBatchBuilder;
use tidemark_core::config::Converter;
use tidemark_core::config::{EventFormat, StreamConfig};
use tidemark_core::names::Naming;
use tidemark_core::names::TableName;
use tidemark_core::position::{PartitionProgress, Seen, SnapshotProgress, SourceState};
use tidemark_core::schema::TableSchema;
use tidemark_events::{
    decode, decode_avro, decode_line, push_event, schema_ids, AvroSchemas, ChangeEvent,
    DecodeError, Decoded, Definition, Format, Truncate,
};
use tidemark_lake::{stored_schema, DeadLetter, DeadLetters, TableKind, TableWriter, Warehouse};
use tidemark_mysql::connect::Source;
use tidemark_mysql::discover::describe;
use tracing::{error, info, warn};

use crate::landing::evolve::{evolve_in_place, fill, Defaults, Evolved};
use crate::landing::{selects, Item, Landed, Pace, Policy};
use crate::sources::kafka::{Input, Msg, Rebalanced, Watermarks};
use crate::sources::registry::Registry;
use crate::sources::transactions::{Held, Transactions};

/// How long a partition's log end is not asked for again after the broker failed to
/// say it (see `Stream::high_water_failed`).
const HIGH_WATER_RETRY: Duration = Duration::from_secs(15);

/// One landed table of the stream.
struct Table {
    schema: Arc<TableSchema>,
    writer: TableWriter,
    /// Rows not landed yet, per partition: a rebalance that takes a partition away
    /// drops its rows (the new owner lands them) and keeps the others.
    pending: BTreeMap<String, ChangeBatchBuilder>,
    /// Progress per partition: committed, plus what `pending` adds.
    progress: BTreeMap<String, PartitionProgress>,
    /// Partitions whose progress moved since the last commit (rows, or replays
    /// skipped): the commit records theirs and keeps the other writers' as they are.
    moved: BTreeSet<String>,
    /// Per partition, the next offset the table had committed when this worker last
    /// read or wrote it. A commit finding another value there knows another worker
    /// landed the partition meanwhile (see [`Table::flush`]).
    landed: BTreeMap<String, i64>,
    /// Latest snapshot-read instant: a streamed change is never stamped before the
    /// snapshot row it follows.
    snapshot_ts_us: i64,
    snapshot_rows: u64,
    last_source_ts_us: Option<i64>,
    pace: Pace,
    /// Streams whose messages define the tables: the definition the table was last
    /// seen to match, so an unchanged schema is recognised without rebuilding it.
    definition: Option<Arc<Definition>>,
}

/// What one table's flush did: rows landed, and the partitions this worker was fenced
/// from with the next offset the table has for them.
type Flushed = (usize, Vec<(String, i64)>);

impl Table {
    /// Land what is pending in one history commit; returns the rows, and the
    /// partitions this worker was fenced from with the next offset the table has for
    /// them.
    ///
    /// Fencing: a worker whose group session expired before it heard of the revoke
    /// (a long pause, a network partition) still holds rows of partitions that
    /// another worker now owns and may have landed. Before committing, each of this
    /// worker's partitions must still have, in the table, the next offset this worker
    /// last saw there; a partition where it moved was landed by someone else, so its
    /// rows here are dropped and its committed progress adopted. The check runs
    /// inside the compare-and-swap, so no partition is ever landed twice and no
    /// committed offset ever moves back, whichever worker commits first.
    async fn flush(&mut self) -> Result<Flushed> {
        let mut parts: BTreeMap<String, tidemark_core::change::ChangeBatch> =
            std::mem::take(&mut self.pending)
                .into_iter()
                .map(|(p, mut b)| b.finish().map(|b| (p, b)))
                .collect::<Result<_, _>>()?;
        let mut fenced_all = Vec::new();
        loop {
            let batches: Vec<_> = parts.values().cloned().collect();
            let batch = tidemark_lake::concat(&self.schema, &batches)?;
            let rows = batch.data.num_rows();
            let mine: Vec<(String, PartitionProgress)> = self
                .moved
                .iter()
                .filter_map(|p| self.progress.get(p).map(|pp| (p.clone(), pp.clone())))
                .collect();
            let (snap_ts, snap_rows, last_ts) = (
                self.snapshot_ts_us,
                self.snapshot_rows,
                self.last_source_ts_us,
            );
            let landed = &self.landed;
            // Other workers of the group may commit to this table too: the commit takes
            // the table's newest state and sets only this worker's partitions.
            let merge = |mut st: SourceState| {
                let fenced: Vec<String> = mine
                    .iter()
                    .filter(|(p, _)| {
                        st.partitions.get(p).map_or(0, |pp| pp.next_offset)
                            != landed.get(p).copied().unwrap_or(0)
                    })
                    .map(|(p, _)| p.clone())
                    .collect();
                if !fenced.is_empty() {
                    return Err(fenced);
                }
                for (p, pp) in &mine {
                    st.partitions.insert(p.clone(), pp.clone());
                }
                st.last_source_ts_us = st.last_source_ts_us.max(last_ts);
                if snap_rows > 0 {
                    let s = st.snapshot.get_or_insert_with(SnapshotProgress::default);
                    s.rows += snap_rows;
                    s.started_at_us = s.started_at_us.max(snap_ts);
                    s.done = true;
                }
                Ok(st)
            };
            let outcome = self
                .writer
                .append_history_shared(&batch, merge)
                .await
                .with_context(|| format!("table {}", self.schema.name.source()))?;
            match outcome {
                Ok(_) => {
                    for (p, pp) in mine {
                        self.landed.insert(p, pp.next_offset);
                    }
                    self.moved.clear();
                    self.snapshot_rows = 0;
                    self.pace.tail_rows += rows as u64;
                    return Ok((rows, fenced_all));
                }
                Err(fenced) => {
                    let committed = self.writer.committed(TableKind::History).state.clone();
                    for p in fenced {
                        let theirs = committed.partitions.get(&p).cloned().unwrap_or_default();
                        let dropped = parts.remove(&p).map_or(0, |b| b.data.num_rows());
                        warn!(table = %self.schema.name.source(), partition = %p,
                            ours = self.landed.get(&p).copied().unwrap_or(0), theirs = theirs.next_offset, dropped,
                            "another worker landed this partition meanwhile (this worker's group session had expired); its rows here are dropped and its progress adopted");
                        self.moved.remove(&p);
                        self.landed.insert(p.clone(), theirs.next_offset);
                        fenced_all.push((p.clone(), theirs.next_offset));
                        self.progress.insert(p, theirs);
                    }
                }
            }
        }
    }

    fn dirty(&self) -> bool {
        !self.moved.is_empty()
    }
}

/// Open (creating if needed) a table's writer, its current table made a
/// merge-on-read base; returns the writer and the mark.
async fn open_writer(
    wh: &Warehouse,
    schema: &Arc<TableSchema>,
) -> tidemark_lake::Result<(TableWriter, i64)> {
    let mut writer = TableWriter::open(wh, schema.clone()).await?;
    writer.evolve_current().await?;
    let mark = writer.start_merge_on_read().await?;
    Ok((writer, mark))
}

/// The decoder a stream's config asks for.
fn format_of(name: &str, cfg: &StreamConfig) -> Result<Format> {
    Ok(match cfg.format {
        EventFormat::Dms => Format::Dms,
        EventFormat::Debezium => {
            let mut o = serde_json::Map::new();
            for (k, v) in [
                ("decimal_handling", &cfg.decimal_handling),
                ("binary_handling", &cfg.binary_handling),
                ("time_precision", &cfg.time_precision),
            ] {
                if let Some(v) = v {
                    o.insert(k.into(), v.replace('.', "_").into());
                }
            }
            Format::Debezium(serde_json::from_value(o.into()).with_context(|| {
                format!("stream {name}: decimal_handling / binary_handling / time_precision")
            })?)
        }
    })
}

/// Where a stream's table definitions come from, and what selects and names its
/// tables.
enum Catalog {
    /// `schema_from`: a MySQL source's information_schema, databases, include,
    /// exclude, naming and per-table keys.
    MySql(Box<Source>),
    /// The messages' own schemas; the stream's config selects and names.
    Messages(Box<StreamConfig>),
}

impl Catalog {
    fn selects(&self, db: &str, table: &str) -> Result<bool> {
        match self {
            Catalog::MySql(source) => selects(source, db, table),
            Catalog::Messages(cfg) => Ok(cfg.selects(db, table)?),
        }
    }

    fn naming(&self) -> Naming {
        match self {
            Catalog::MySql(source) => source.config.naming,
            Catalog::Messages(cfg) => cfg.naming,
        }
    }

    /// `db.table` as the message `def` defines it (a stream without `schema_from`).
    fn definition_of(
        &self,
        stream: &str,
        db: &str,
        table: &str,
        def: Option<&Definition>,
    ) -> std::result::Result<TableSchema, String> {
        let Catalog::Messages(cfg) = self else {
            unreachable!("only streams without schema_from read definitions from messages")
        };
        let Some(def) = def else {
            return Err(format!(
                "the message carries no schema, and stream {stream} has no schema_from, so the definition of {db}.{table} is unknown; turn on schemas at the connector (value.converter.schemas.enable=true and key.converter.schemas.enable=true, or the Avro converter), or set schema_from to a MySQL source with capture = \"none\""
            ));
        };
        let columns = def
            .columns
            .iter()
            .map(|c| {
                tidemark_core::schema::ColumnSchema::source(
                    &c.name,
                    &c.data_type,
                    &c.column_type,
                    c.precision,
                    c.scale,
                )
            })
            .collect();
        let key = cfg
            .tables
            .get(&format!("{db}.{table}"))
            .and_then(|o| o.primary_key.clone())
            .unwrap_or_else(|| def.key.clone());
        if key.is_empty() {
            return Err(format!(
                "the message key of {db}.{table} has no schema, so its primary key is unknown; turn on key schemas at the connector (key.converter.schemas.enable=true), or name it: [streams.{stream}.tables.\"{db}.{table}\"] primary_key = [\"id\"]"
            ));
        }
        let naming = cfg.naming;
        TableSchema::new(TableName::new(db, table, naming), columns, &key, naming)
            .map_err(|e| format!("{db}.{table}: {e}"))
    }
}

/// How a stream's messages are decoded.
enum Decoder {
    /// JSON (Debezium's JsonConverter, AWS DMS): each message stands alone.
    Json(Format),
    /// Avro in the Confluent wire format: schemas by id, from the registry, cached.
    Avro(Box<(Registry, AvroSchemas)>),
}

struct Stream {
    name: String,
    decoder: Decoder,
    catalog: Catalog,
    wh: Warehouse,
    metrics: crate::metrics::Shared,
    tables: HashMap<String, Table>,
    /// Tables the source's config does not select.
    ignored: HashSet<String>,
    /// Tables that cannot be landed (no definition, parked), with why: their
    /// messages go to the dead letters.
    failed: HashMap<String, String>,
    letters: Vec<DeadLetter>,
    /// Per partition of `letters`, the offset after the last one.
    letters_upto: BTreeMap<String, i64>,
    dead_letters: Option<DeadLetters>,
    /// Per partition, the offset below which dead letters are recorded already.
    letters_from: HashMap<String, i64>,
    /// Next offset per Kafka partition read so far.
    consumed: BTreeMap<(String, i32), i64>,
    /// Asks the broker where a partition's log ends (Kafka): a table position beyond
    /// it means the offsets were reused (a recreated topic), never that a message was
    /// landed before.
    watermarks: Option<Watermarks>,
    /// Per partition, the highest end of its log the broker reported: asked again
    /// only when a table's position is beyond it (another worker may have landed
    /// messages written since).
    high_water: HashMap<String, i64>,
    /// Per partition, when the broker last failed to say where its log ends: not
    /// asked again for [`HIGH_WATER_RETRY`], so replaying a partition while the broker
    /// does not answer costs one timeout, not one per replayed message.
    high_water_failed: HashMap<String, Instant>,
    /// Partitions another worker landed while this one held rows of them (see
    /// `Table::flush`), with the lowest next offset a table has for them: the input
    /// reads them again from there if they are still this worker's.
    fenced: BTreeMap<String, i64>,
    replayed: u64,
    /// With `transaction_topic`: changes held until their source transaction is
    /// complete for their table (see [`crate::sources::transactions`]).
    txns: Option<Transactions>,
    /// Changes released by `txns`, to be buffered before anything else is read.
    ready: VecDeque<(Msg, Held)>,
}

impl Stream {
    /// The table `db.table` of a change, opened on first sight: `Ok(None)` when the
    /// config does not select it, `Ok(Err(why))` when it cannot be landed (its
    /// messages are dead letters); `Err` when the source or the lake failed (the
    /// stream stops, and resumes from the lake's positions when started again).
    ///
    /// `def`: the definition the message carries (a stream without `schema_from`
    /// creates a new table with it).
    async fn table(
        &mut self,
        db: &str,
        table: &str,
        def: Option<&Arc<Definition>>,
    ) -> Result<Result<Option<&mut Table>, String>> {
        let key = format!("{db}.{table}");
        if self.ignored.contains(&key) {
            return Ok(Ok(None));
        }
        if let Some(why) = self.failed.get(&key) {
            return Ok(Err(why.clone()));
        }
        if !self.tables.contains_key(&key) {
            match self.open(db, table, def).await? {
                Ok(Some(t)) => {
                    self.tables.insert(key.clone(), t);
                }
                Ok(None) => {
                    self.ignored.insert(key);
                    return Ok(Ok(None));
                }
                // A message without a schema says nothing of the table: the next one
                // may define it.
                Err(why) if def.is_none() && matches!(self.catalog, Catalog::Messages(_)) => {
                    return Ok(Err(why));
                }
                Err(why) => {
                    error!(stream = %self.name, table = %key, error = %why, "table cannot be landed; its messages go to tidemark.dead_letters");
                    self.failed.insert(key, why.clone());
                    return Ok(Err(why));
                }
            }
        }
        Ok(Ok(self.tables.get_mut(&key)))
    }

    async fn open(
        &mut self,
        db: &str,
        table: &str,
        def: Option<&Arc<Definition>>,
    ) -> Result<Result<Option<Table>, String>> {
        if !self.catalog.selects(db, table)? {
            return Ok(Ok(None));
        }
        // A table landed before streams with the definition it was landed with (a
        // change shows in the events and evolves it); a new one takes the source's,
        // or the message's.
        let name = TableName::new(db, table, self.catalog.naming());
        let url = self
            .wh
            .table_url(&name.schema, &name.table, TableKind::History);
        let (history, exists) = self.wh.delta_table(&url).await?;
        let landed = if exists {
            stored_schema(&history)
        } else {
            None
        };
        let schema = match (landed, &self.catalog) {
            (Some(s), _) => Arc::new(s),
            (None, Catalog::MySql(source)) => match describe(source, db, table).await? {
                Some(d) => d.schema,
                None => {
                    return Ok(Err(format!(
                        "{db}.{table} is not in source {}'s information_schema (dropped, or not visible to its user), so its definition is unknown",
                        source.name
                    )))
                }
            },
            (None, catalog) => {
                match catalog.definition_of(&self.name, db, table, def.map(|d| d.as_ref())) {
                    Ok(s) => Arc::new(s),
                    Err(why) => return Ok(Err(why)),
                }
            }
        };
        // Another worker of the group may be creating or opening the same table.
        let (mut writer, mark) = {
            use backon::Retryable;
            (|| open_writer(&self.wh, &schema))
                .retry(
                    backon::ExponentialBuilder::default()
                        .with_min_delay(Duration::from_millis(200))
                        .with_max_times(5),
                )
                .notify(|e, pause| {
                    warn!(stream = %self.name, table = %schema.name.source(), error = %e, pause_ms = pause.as_millis() as u64, "opening the table failed; trying again");
                })
                .await?
        };
        // A schema change's debt is paid before anything lands.
        fill(&mut writer).await.with_context(|| {
            format!("table {db}.{table}: writing the defaults of added columns")
        })?;
        let st = writer.committed(TableKind::History).state.clone();
        if let Some(why) = st.parked {
            return Ok(Err(format!(
                "parked: {why}; land it again with `tidemark snapshot --resnapshot --table {db}.{table}`"
            )));
        }
        let snapshot = st.snapshot.clone().unwrap_or_default();
        let from = st
            .partitions
            .iter()
            .map(|(p, pp)| format!("{p}@{}", pp.next_offset))
            .collect::<Vec<_>>()
            .join(" ");
        info!(stream = %self.name, table = %schema.name.source(), from = %from, "landing");
        Ok(Ok(Some(Table {
            pending: BTreeMap::new(),
            schema,
            writer,
            landed: st
                .partitions
                .iter()
                .map(|(p, pp)| (p.clone(), pp.next_offset))
                .collect(),
            progress: st.partitions,
            moved: BTreeSet::new(),
            snapshot_ts_us: snapshot.started_at_us,
            snapshot_rows: 0,
            last_source_ts_us: st.last_source_ts_us,
            pace: Pace::opened(snapshot.rows, mark == i64::MIN),
            definition: None,
        })))
    }

    /// Keep `msg` in the dead letters (once, even when it is read again).
    async fn dead(
        &mut self,
        msg: &Msg,
        table: Option<String>,
        error: String,
    ) -> Result<Item<Barrier>> {
        let part = msg.partition_name();
        if !self.letters_from.contains_key(&part) {
            if self.dead_letters.is_none() {
                self.dead_letters = Some(DeadLetters::open(&self.wh).await?);
            }
            let dl = self.dead_letters.as_mut().expect("opened");
            let from = dl.next_offset(&self.name, &part).await?;
            self.letters_from.insert(part.clone(), from);
        }
        if msg.offset < self.letters_from[&part] {
            return Ok(Item::Read);
        }
        warn!(stream = %self.name, position = %msg.position(), table = table.as_deref().unwrap_or("-"), error = %error, "message sent to tidemark.dead_letters");
        self.letters_upto.insert(part, msg.offset + 1);
        self.letters.push(DeadLetter {
            stream: self.name.clone(),
            topic: msg.topic.clone(),
            partition: msg.partition,
            offset: msg.offset,
            key: msg.key.clone(),
            value: msg.value.clone(),
            table,
            error,
            received_us: chrono::Utc::now().timestamp_micros(),
        });
        // Nothing for a table, but the letter lands with the next commit.
        Ok(Item::Buffered(0))
    }

    /// Decode one message and buffer what it carries.
    async fn handle(&mut self, msg: Msg) -> Result<Item<Barrier>> {
        let read = self
            .consumed
            .insert((msg.topic.clone(), msg.partition), msg.offset + 1);
        if read.is_none() && !msg.file_line {
            info!(stream = %self.name, position = %msg.position(), "reading a partition");
        }
        let position = msg.position();
        let decoded = match &mut self.decoder {
            Decoder::Json(format) if msg.file_line => {
                decode_line(msg.value.as_deref().unwrap_or_default(), *format, &position)
            }
            Decoder::Json(format) => {
                decode(*format, msg.key.as_deref(), msg.value.as_deref(), &position)
            }
            Decoder::Avro(avro) => {
                let (registry, schemas) = &mut **avro;
                match schema_ids(msg.key.as_deref(), msg.value.as_deref()) {
                    Err(e) => Err(e),
                    Ok((k, v)) => {
                        // A registry that cannot be reached stops the stream (it resumes
                        // from the lake's positions); a schema it refuses to give, or
                        // cannot be parsed, is the message's fault: a dead letter.
                        let mut refused = None;
                        for id in [k, v].into_iter().flatten() {
                            if schemas.has(id) {
                                continue;
                            }
                            let text = registry.schema(id).await.with_context(|| {
                                format!("stream {}, message {position}", self.name)
                            })?;
                            if let Err(e) = schemas.insert(id, &text) {
                                refused = Some(e);
                            }
                        }
                        match refused {
                            Some(e) => {
                                return self.dead(&msg, None, format!("{position}: {e}")).await
                            }
                            None => decode_avro(
                                msg.key.as_deref(),
                                msg.value.as_deref(),
                                &position,
                                schemas,
                            ),
                        }
                    }
                }
            }
        };
        match decoded {
            Err(e) => self.dead(&msg, None, e.to_string()).await,
            Ok(Decoded::Change(ev)) if self.txns.is_some() => {
                self.transactional(msg, Held::Row(Box::new(ev))).await
            }
            Ok(Decoded::Truncate(t)) if self.txns.is_some() => {
                self.transactional(msg, Held::Truncate(t)).await
            }
            Ok(Decoded::Transaction(b)) if self.txns.is_some() => {
                if let Some(tx) = &mut self.txns {
                    tx.end(&msg, b);
                }
                self.release().await
            }
            Ok(Decoded::Change(ev)) => self.change(msg, ev, false).await,
            Ok(Decoded::Truncate(t)) => self.truncate(msg, t).await,
            Ok(Decoded::SchemaChange(sc)) => {
                info!(stream = %self.name, position = %position, db = %sc.db, ddl = sc.ddl.as_deref().unwrap_or("-"), "schema change seen; a changed table evolves when its events show the change");
                Ok(Item::Read)
            }
            // Tombstones follow deletes already landed; heartbeats, transaction
            // boundaries and DMS control records carry no rows.
            Ok(_) => Ok(Item::Read),
        }
    }

    /// With `transaction_topic`: count the change toward its transaction's `END`, and
    /// hold it until the transaction is complete for its table (or, outside a
    /// transaction, until what its table and partition hold before it is released).
    /// A change of a table not landed, or landed before (read again after a
    /// restart), is not held.
    async fn transactional(&mut self, msg: Msg, held: Held) -> Result<Item<Barrier>> {
        let (db, table, def) = match &held {
            Held::Row(ev) => (ev.db.clone(), ev.table.clone(), ev.definition.clone()),
            Held::Truncate(t) => (t.db.clone(), t.table.clone(), None),
        };
        let name = format!("{db}.{table}");
        let part = msg.partition_name();
        let tx = self
            .txns
            .as_mut()
            .context("a stream with transaction_topic")?;
        if let Some(id) = held.transaction() {
            tx.count(id, &name);
        }
        let behind = tx.holding(&name, &part);
        if !behind {
            if held.transaction().is_none() {
                return self.buffer(msg, held).await;
            }
            match self.table(&db, &table, def.as_ref()).await? {
                Ok(Some(t))
                    if t.progress
                        .get(&part)
                        .is_none_or(|p| msg.offset >= p.next_offset) => {}
                _ => return self.buffer(msg, held).await,
            }
        }
        let tx = self
            .txns
            .as_mut()
            .context("a stream with transaction_topic")?;
        tx.hold(msg, name, held);
        self.release().await
    }

    /// Buffer what the transactions release now.
    async fn release(&mut self) -> Result<Item<Barrier>> {
        if let Some(tx) = &mut self.txns {
            let out = tx.release();
            let catalog = &self.catalog;
            tx.prune(|t| {
                t.split_once('.')
                    .is_none_or(|(db, t)| catalog.selects(db, t).unwrap_or(true))
            });
            self.ready.extend(out);
        }
        self.drain().await
    }

    /// Buffer the released changes, all in one go (the landing loop commits only
    /// between calls, so a transaction's changes of one table land together). A
    /// barrier (a schema change, a truncate) stops it; the rest follow it.
    async fn drain(&mut self) -> Result<Item<Barrier>> {
        let (mut rows, mut any) = (0, false);
        while let Some((msg, held)) = self.ready.pop_front() {
            match self.buffer(msg, held).await? {
                Item::Buffered(n) => {
                    rows += n;
                    any = true;
                }
                Item::Read | Item::Idle => {}
                barrier @ Item::Barrier { .. } => return Ok(barrier),
            }
        }
        Ok(if any {
            Item::Buffered(rows)
        } else {
            Item::Read
        })
    }

    /// Buffer a change that need not (or no longer) wait.
    async fn buffer(&mut self, msg: Msg, held: Held) -> Result<Item<Barrier>> {
        match held {
            Held::Row(ev) => self.change(msg, *ev, false).await,
            Held::Truncate(t) => self.truncate(msg, t).await,
        }
    }

    /// Buffer one change; `evolved`: its table was just evolved for it (once only).
    async fn change(
        &mut self,
        msg: Msg,
        mut ev: ChangeEvent,
        evolved: bool,
    ) -> Result<Item<Barrier>> {
        let part = msg.partition_name();
        let stream_name = self.name.clone();
        let by_messages = matches!(self.catalog, Catalog::Messages(_));
        let def = ev.definition.clone();
        if by_messages && def.is_none() {
            let why = self
                .catalog
                .definition_of(&self.name, &ev.db, &ev.table, None)
                .expect_err("no definition");
            return self.dead(&msg, Some(ev.source_table()), why).await;
        }
        // A stream whose messages define the tables: a message with another
        // definition than the table's means the table changed at the source. The
        // definition is compared first, so an unchanged schema costs no rebuild.
        let known = match (
            self.tables
                .get(&ev.source_table())
                .and_then(|t| t.definition.as_ref()),
            &def,
        ) {
            // Avro events of one schema share one definition.
            (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
            _ => false,
        };
        let candidate = match &def {
            Some(d) if by_messages && !known && !evolved => {
                Some(
                    self.catalog
                        .definition_of(&self.name, &ev.db, &ev.table, Some(d)),
                )
            }
            _ => None,
        };
        let t = match self.table(&ev.db, &ev.table, def.as_ref()).await? {
            Ok(None) => return Ok(Item::Read),
            Err(why) => return self.dead(&msg, Some(ev.source_table()), why).await,
            Ok(Some(t)) => t,
        };
        let prog = t.progress.entry(part.clone()).or_default();
        if msg.offset < prog.next_offset {
            // Landed before (or pending) — unless the partition's log no longer
            // reaches that far: then offsets were reused. The broker is asked only
            // when what it said last is below the table's position.
            let next = prog.next_offset;
            let known = self.high_water.get(&part).copied().unwrap_or(-1);
            let failed_lately = self
                .high_water_failed
                .get(&part)
                .is_some_and(|t| t.elapsed() < HIGH_WATER_RETRY);
            let high = match (&self.watermarks, known < next && !failed_lately) {
                (Some(w), true) => {
                    let (topic, p) = (msg.topic.clone(), msg.partition);
                    let w = w.clone();
                    let fresh = tokio::task::spawn_blocking(move || w.high(&topic, p))
                        .await
                        .ok()
                        .flatten();
                    match fresh {
                        Some(h) => {
                            self.high_water.insert(part.clone(), h);
                            self.high_water_failed.remove(&part);
                        }
                        None => {
                            self.high_water_failed.insert(part.clone(), Instant::now());
                        }
                    }
                    fresh
                }
                _ => None,
            };
            // Re-borrow: asking the broker needed `self`.
            let t = self
                .tables
                .get_mut(&ev.source_table())
                .expect("opened above");
            let prog = t.progress.entry(part.clone()).or_default();
            if let Some(high) = high {
                if high < prog.next_offset {
                    anyhow::bail!(
                        "stream {}, partition {part}: table {} has landed this partition up to offset {}, but the broker's partition now ends at offset {high}: the topic was deleted and created again, or the broker lost messages. Its offsets start again, so new messages would be taken for ones already landed; nothing was read from it. If the topic was recreated on purpose, land the table again (`tidemark snapshot --resnapshot --table {}`) and reset the stream's group",
                        stream_name,
                        ev.source_table(),
                        prog.next_offset,
                        ev.source_table()
                    );
                }
            }
            return Ok(Item::Read);
        }
        let origin = ev.origin.clone();
        if let Some(o) = &origin {
            match prog.judge(o) {
                Seen::New => {}
                Seen::Replay => {
                    prog.next_offset = msg.offset + 1;
                    t.moved.insert(part);
                    self.replayed += 1;
                    return Ok(Item::Read);
                }
                // Neither skipped nor landed: either could be wrong. The stream stops
                // here, before this message, and resumes here once resolved.
                Seen::Unordered(why) => {
                    anyhow::bail!(
                        "stream {}, partition {part}, message {}: table {}: {why}. Nothing from this message on was landed. Turn on GTIDs at the source (gtid_mode=ON, or MariaDB's GTIDs in the connector) so changes can be ordered across servers, or land the table again from a new connector snapshot (`tidemark snapshot --resnapshot`)",
                        self.name,
                        msg.position(),
                        ev.source_table()
                    );
                }
            }
        }
        if let (Some(new), Some(def)) = (candidate, def) {
            // An event older than what the table landed, in another shape: a
            // partition lagging behind one that carried the change. It lands in the
            // table's shape (a column the table no longer has is left out, one it
            // gained is NULL) rather than turning the table back.
            let older = t.last_source_ts_us.is_some_and(|l| ev.source_ts_us < l);
            match new {
                Ok(new) if new.same_definition(&t.schema) => t.definition = Some(def),
                Ok(_) if older => {
                    let keep = |img: &mut Option<tidemark_events::Row>| {
                        if let Some(r) = img {
                            r.columns.retain(|(c, _)| {
                                t.schema.columns.iter().any(|k| &k.source_name == c)
                            });
                        }
                    };
                    keep(&mut ev.before);
                    keep(&mut ev.after);
                    warn!(stream = %stream_name, table = %ev.source_table(), position = %msg.position(),
                        "an event older than the table's newest change has the table's earlier shape; it lands in the current shape");
                }
                Ok(_) => {
                    return Ok(Item::Barrier {
                        all_positions: false,
                        then: Barrier::Evolve {
                            msg,
                            ev: Box::new(ev),
                            error: "the message's schema differs from the table's definition"
                                .into(),
                        },
                    })
                }
                Err(why) => {
                    let table = ev.source_table();
                    return self.dead(&msg, Some(table), why).await;
                }
            }
        }
        if ev.snapshot {
            t.snapshot_ts_us = t.snapshot_ts_us.max(ev.source_ts_us);
        } else {
            ev.source_ts_us = ev.source_ts_us.max(t.snapshot_ts_us);
        }
        let schema = t.schema.clone();
        let builder = t
            .pending
            .entry(part.clone())
            .or_insert_with(|| ChangeBatchBuilder::new(schema.clone(), 256));
        match push_event(builder, &schema, &ev, msg.offset) {
            Ok(()) => {}
            // The event has a column the table lacks: the table changed at the source.
            // It evolves once what is buffered has landed under the old definition.
            Err(e @ DecodeError::UnknownColumn { .. }) if !evolved => {
                return Ok(Item::Barrier {
                    all_positions: false,
                    then: Barrier::Evolve {
                        msg,
                        ev: Box::new(ev),
                        error: e.to_string(),
                    },
                });
            }
            Err(e) => {
                return self
                    .dead(&msg, Some(ev.source_table()), e.to_string())
                    .await
            }
        }
        prog.next_offset = msg.offset + 1;
        if ev.snapshot {
            t.snapshot_rows += 1;
        } else if let Some(o) = &origin {
            prog.record(o);
        }
        t.moved.insert(part);
        // The newest, not the last: partitions interleave, and a schema change stamps
        // its default versions after every change landed.
        t.last_source_ts_us = t.last_source_ts_us.max(Some(ev.source_ts_us));
        Ok(Item::Buffered(1))
    }

    /// Evolve `db.table` in place to the definition the source has now (a column
    /// added, dropped or widened; see `tidemark_core::evolve`), as binlog capture does
    /// for DDL. The landing loop has landed what was buffered, under the old
    /// definition. `Ok(Err(why))` when it cannot be done in place; `Ok(Ok(()))` when
    /// the table has the new definition now (evolved here or by another worker of the
    /// group).
    async fn evolve(
        &mut self,
        ev: &ChangeEvent,
        position: &str,
        seq: i64,
    ) -> Result<Result<(), String>> {
        let (db, table, ts_us) = (ev.db.as_str(), ev.table.as_str(), ev.source_ts_us);
        let key = format!("{db}.{table}");
        let given: Vec<(String, String)>;
        let (new, defaults) = match &self.catalog {
            Catalog::MySql(source) => {
                let Some(d) = describe(source, db, table).await? else {
                    return Ok(Err(format!(
                        "{key} is no longer in source {}'s information_schema",
                        source.name
                    )));
                };
                (d.schema, Defaults::Source(source))
            }
            catalog => {
                let def = ev.definition.as_deref();
                let new = match catalog.definition_of(&self.name, db, table, def) {
                    Ok(s) => Arc::new(s),
                    Err(why) => return Ok(Err(why)),
                };
                given = def
                    .map(|d| {
                        d.columns
                            .iter()
                            .filter_map(|c| Some((c.name.clone(), c.default.clone()?)))
                            .collect()
                    })
                    .unwrap_or_default();
                (new, Defaults::Given(&given))
            }
        };
        let t = self
            .tables
            .get_mut(&key)
            .context("the table of a change is open")?;
        if new.same_definition(&t.schema) {
            return Ok(Err(match &self.catalog {
                Catalog::MySql(source) => format!(
                    "source {}'s definition of {key} does not have that column either",
                    source.name
                ),
                Catalog::Messages(_) => {
                    format!("the message's own schema of {key} does not have that column either")
                }
            }));
        }
        // From the messages alone a renamed column looks like one dropped and one
        // added: applied so, every row not changed since would read NULL in the new
        // column. Both at once is refused: the table's events go to the dead letters
        // saying why, until it is landed again.
        if let Catalog::Messages(_) = &self.catalog {
            let names = |s: &TableSchema| -> BTreeSet<String> {
                s.columns
                    .iter()
                    .map(|c| c.source_name.to_ascii_lowercase())
                    .collect()
            };
            let (old_names, new_names) = (names(&t.schema), names(&new));
            let gone: Vec<_> = old_names.difference(&new_names).cloned().collect();
            let came: Vec<_> = new_names.difference(&old_names).cloned().collect();
            if !gone.is_empty() && !came.is_empty() {
                return Ok(Err(format!(
                    "in one change, column(s) {} disappeared and {} appeared: from the messages alone a rename cannot be told from a drop and an add, and taking it for the latter would show NULL in every row not changed since",
                    gone.join(", "),
                    came.join(", ")
                )));
            }
        }
        // The rows' default versions belong at the change, which a stream does not
        // see: after every change landed before it, and no later than this event.
        // (Another partition's events may arrive after this one with an earlier time;
        // versions stamped after them would hide them.)
        let fill_ts = |st: &SourceState| {
            st.last_source_ts_us
                .map_or(ts_us, |landed| ts_us.min(landed + 1))
        };
        let evolved = evolve_in_place(
            defaults,
            db,
            table,
            &mut t.writer,
            &new,
            &[],
            position,
            seq,
            fill_ts,
            |st| st,
        )
        .await?;
        let evolution = match evolved {
            Ok(Evolved::Now(e)) => e,
            Ok(Evolved::Elsewhere) => {
                // Another worker of the group evolved it already: read it again.
                self.tables.remove(&key);
                return Ok(Ok(()));
            }
            Err(why) => {
                return Ok(Err(format!(
                    "{key} changed at the source in a way that cannot be applied in place: {why}; {}",
                    match &self.catalog {
                        Catalog::MySql(_) => format!("land it again with `tidemark snapshot --resnapshot --table {key}`"),
                        Catalog::Messages(_) => "land it again from a new connector snapshot (an incremental snapshot signal for the table, or a new connector), after moving the table's Delta directories aside".to_string(),
                    }
                )))
            }
        };
        let filled = fill(&mut t.writer)
            .await
            .with_context(|| format!("table {key}: writing the defaults of added columns"))?;
        t.schema = t.writer.schema().clone();
        t.definition = None;
        t.pending.clear();
        // Reads take every row from history until the next compaction writes a base
        // of the new shape.
        t.pace.rebuilding(filled);
        info!(stream = %self.name, table = %key, position = %position,
            changes = %evolution.changes.join("; "), "schema changed at the source; the table evolved in place");
        Ok(Ok(()))
    }

    /// The group took `revoked` away: nothing pending for them may land, and their
    /// consumer offsets are no longer this worker's to commit.
    fn revoke(&mut self, revoked: &[(String, i32)]) {
        for (topic, p) in revoked {
            let part = format!("{topic}/{p}");
            for t in self.tables.values_mut() {
                t.pending.remove(&part);
                t.moved.remove(&part);
            }
            self.letters
                .retain(|l| !(l.topic == *topic && l.partition == *p));
            self.letters_upto.remove(&part);
            self.consumed.remove(&(topic.clone(), *p));
            if let Some(tx) = &mut self.txns {
                tx.revoke(&part);
            }
            self.ready.retain(|(m, _)| m.partition_name() != part);
        }
        info!(stream = %self.name, partitions = revoked.len(), "partitions revoked; their pending changes are left to the new owner");
    }

    /// Debezium's `op = t`: every row of the table went away. What is buffered lands
    /// first (a barrier); then [`Stream::truncate_now`].
    async fn truncate(&mut self, msg: Msg, tr: Truncate) -> Result<Item<Barrier>> {
        let part = msg.partition_name();
        let name = format!("{}.{}", tr.db, tr.table);
        match self.table(&tr.db, &tr.table, None).await? {
            Ok(None) => Ok(Item::Read),
            Err(why) => self.dead(&msg, Some(name), why).await,
            Ok(Some(t))
                if t.progress
                    .get(&part)
                    .is_some_and(|p| msg.offset < p.next_offset) =>
            {
                Ok(Item::Read)
            }
            Ok(Some(_)) => Ok(Item::Barrier {
                all_positions: false,
                then: Barrier::Truncate { msg, tr },
            }),
        }
    }

    /// One commit of tombstones for every row of the table.
    async fn truncate_now(&mut self, msg: Msg, tr: Truncate) -> Result<()> {
        let part = msg.partition_name();
        let name = format!("{}.{}", tr.db, tr.table);
        let t = self
            .tables
            .get_mut(&name)
            .context("the truncated table is open")?;
        t.writer.reload().await?;
        let mut state = t.writer.committed(TableKind::History).state.clone();
        // Fenced as a flush is (see `Table::flush`): another worker that landed this
        // partition past the truncate applied it already.
        let theirs = state.partitions.get(&part).cloned().unwrap_or_default();
        if theirs.next_offset > msg.offset {
            warn!(stream = %self.name, table = %name, partition = %part, theirs = theirs.next_offset,
                "another worker landed this partition meanwhile, the truncate included; its progress is adopted");
            t.landed.insert(part.clone(), theirs.next_offset);
            t.progress.insert(part.clone(), theirs.clone());
            let at = self.fenced.entry(part).or_insert(theirs.next_offset);
            *at = (*at).min(theirs.next_offset);
            return Ok(());
        }
        t.progress.entry(part.clone()).or_default().next_offset = msg.offset + 1;
        state
            .partitions
            .insert(part.clone(), t.progress[&part].clone());
        let closed = t
            .writer
            .delete_all(tr.source_ts_us, &tr.source_pos, msg.offset, state)
            .await
            .with_context(|| format!("truncating {name}"))?;
        // What this worker last saw committed for the partition, for its next flush.
        t.landed.insert(part.clone(), msg.offset + 1);
        info!(stream = %self.name, table = %name, rows = closed, position = %msg.position(), "table truncated at the source");
        Ok(())
    }

    /// Tell the input what is in the lake after a flush: partitions this worker was
    /// fenced from are read again from what the lake has (if they are still its own,
    /// the messages it dropped are needed), and their consumer offsets are not
    /// committed from here.
    fn settle(&mut self, input: &mut Input) {
        for (part, next) in std::mem::take(&mut self.fenced) {
            if let Some((topic, p)) = part
                .rsplit_once('/')
                .and_then(|(t, p)| Some((t.to_string(), p.parse::<i32>().ok()?)))
            {
                self.consumed.remove(&(topic.clone(), p));
                input.seek(&topic, p, next);
            }
        }
        // The group's offsets never pass a change held back for its transaction, nor
        // an END still needed: a restart reads them again.
        let mut upto = self.consumed.clone();
        if let Some(tx) = &self.txns {
            for (k, limit) in tx.limits() {
                if let Some(o) = upto.get_mut(&k) {
                    *o = (*o).min(limit);
                }
            }
        }
        input.landed(&upto);
    }

    /// Commit the dead letters, then every table with something pending; the caller then tells
    /// the input what is in the lake.
    async fn flush(&mut self) -> Result<Vec<Landed>> {
        let started = Instant::now();
        // Dead letters first: once the rows after a message land, its table's position
        // skips it when it is read again, so its letter must be in the lake by then.
        let dead = self.letters.len();
        if dead > 0 {
            let upto = std::mem::take(&mut self.letters_upto);
            let dl = self
                .dead_letters
                .as_mut()
                .expect("opened with the first letter");
            dl.append(&self.name, &self.letters, &upto)
                .await
                .context("recording dead letters")?;
            for (part, next) in upto {
                self.letters_from.insert(part, next);
            }
            self.letters.clear();
        }
        let due: Vec<&mut Table> = self.tables.values_mut().filter(|t| t.dirty()).collect();
        let tables = due.len();
        // The futures are made (and boxed) before the stream holds them, so no closure
        // is held across an await: rustc could not prove the pipeline's future Send
        // otherwise, and the daemon spawns it.
        let flushes: Vec<futures::future::BoxFuture<'_, (String, Result<Flushed>)>> = due
            .into_iter()
            .map(|t| async move { (t.schema.name.source(), t.flush().await) }.boxed())
            .collect();
        let results: Vec<(String, Result<Flushed>)> = futures::stream::iter(flushes)
            .buffer_unordered(4)
            .collect()
            .await;
        let mut rows = 0;
        let mut landed = Vec::new();
        for (table, r) in results {
            let (n, fenced) = r?;
            for (part, next) in fenced {
                let at = self.fenced.entry(part).or_insert(next);
                *at = (*at).min(next);
            }
            rows += n;
            let t = &self.tables[&table];
            landed.push(Landed {
                sql_name: t.schema.name.sql(),
                rows: n,
                last_source_ts_us: t.last_source_ts_us,
                ingest_us: t.writer.committed(TableKind::History).state.last_ingest_us,
                table,
            });
        }
        self.metrics
            .lock()
            .expect("metrics lock")
            .stream(&self.name, dead as u64, self.replayed);
        if tables > 0 || dead > 0 {
            // Where each partition has been read to (all of it is in the lake now).
            let read_to = self
                .consumed
                .iter()
                .map(|((t, p), o)| format!("{t}/{p}@{o}"))
                .collect::<Vec<_>>()
                .join(" ");
            info!(stream = %self.name, rows, tables, dead_letters = dead, replays_skipped = self.replayed,
                commit_ms = started.elapsed().as_millis() as u64, read_to = %read_to, "committed");
        }
        self.replayed = 0;
        Ok(landed)
    }
}

/// Run one stream until stopped (or, with `--until-caught-up`, until everything
/// there is has been read).
pub async fn run_stream(cx: &crate::Pipeline<'_>, name: &str) -> Result<()> {
    let (config, wh, stop) = (cx.config, cx.wh, cx.stop.clone());
    let (until_caught_up, metrics) = (cx.options.until_caught_up, cx.metrics.clone());
    let environment = cx.options.environment.as_str();
    let cfg = config.streams.get(name).context("stream not defined")?;
    let catalog = match &cfg.schema_from {
        Some(from) => Catalog::MySql(Box::new(
            Source::connect(from, config.source_for(environment, from)?)
                .await
                .with_context(|| {
                    format!("stream {name}: connecting to source {from} for table definitions")
                })?,
        )),
        None => Catalog::Messages(Box::new(cfg.clone())),
    };
    let decoder = match (&cfg.converter, &cfg.schema_registry) {
        (Converter::Avro, Some(r)) => Decoder::Avro(Box::new((
            Registry::new(
                &r.url,
                r.username.clone(),
                r.password(name)?,
                r.ca_file.as_deref(),
            )
            .with_context(|| format!("stream {name}: schema_registry"))?,
            AvroSchemas::default(),
        ))),
        _ => Decoder::Json(format_of(name, cfg)?),
    };
    let input = Input::open(name, cfg)?;
    let stream = Stream {
        name: name.to_string(),
        decoder,
        catalog,
        wh: wh.clone(),
        metrics: metrics.clone(),
        tables: HashMap::new(),
        ignored: HashSet::new(),
        failed: HashMap::new(),
        letters: Vec::new(),
        letters_upto: BTreeMap::new(),
        dead_letters: None,
        letters_from: HashMap::new(),
        consumed: BTreeMap::new(),
        fenced: BTreeMap::new(),
        watermarks: input.watermarks(),
        high_water: HashMap::new(),
        high_water_failed: HashMap::new(),
        replayed: 0,
        txns: cfg
            .transaction_topic
            .as_ref()
            .map(|_| Transactions::default()),
        ready: VecDeque::new(),
    };
    info!(stream = %name, kind = ?cfg.kind, "streaming");
    let policy = Policy {
        interval: Duration::from_millis(cfg.flush_interval_ms.max(10)),
        flush_rows: cfg.flush_rows,
        until_caught_up,
        maintain_every: None,
    };
    crate::landing::land(&mut Events { stream, input }, policy, wh, stop, metrics).await
}

/// An event stream (Kafka or files), as the landing loop reads it.
struct Events {
    stream: Stream,
    input: Input,
}

/// What a stream applies with nothing buffered before it.
enum Barrier {
    /// The group's partitions moved (those revoked are dropped already): what is
    /// left lands, then every table is read again at its next message, so
    /// partitions that came from another worker start from what that worker
    /// committed. The message read with the rebalance follows.
    Rebalanced(Option<Msg>),
    /// An event with a column its table lacks: the table evolves, then the event is
    /// buffered again (`error`: why it did not fit).
    Evolve {
        msg: Msg,
        ev: Box<ChangeEvent>,
        error: String,
    },
    /// Debezium's truncate.
    Truncate { msg: Msg, tr: Truncate },
}

impl crate::landing::Source for Events {
    type Barrier = Barrier;

    fn name(&self) -> &str {
        &self.stream.name
    }

    async fn next(&mut self, wait: Duration) -> Result<Item<Barrier>> {
        // What a barrier interrupted goes first.
        if !self.stream.ready.is_empty() {
            return self.stream.drain().await;
        }
        if let Some(w) = self.stream.txns.as_mut().and_then(Transactions::stalled) {
            warn!(stream = %self.stream.name, waiting = %w,
                "changes held for over a minute waiting for their source transaction to complete; check that the connector writes the transaction topic (provide.transaction.metadata = true) and that transaction_topic names it, and that one worker reads all of a table's partitions");
        }
        let msg = self.input.next(wait).await?;
        let rebalanced = self.input.rebalanced();
        if !rebalanced.is_empty() {
            for r in &rebalanced {
                if let Rebalanced::Revoked(parts) = r {
                    self.stream.revoke(parts);
                }
            }
            return Ok(Item::Barrier {
                all_positions: true,
                then: Barrier::Rebalanced(msg),
            });
        }
        match msg {
            Some(msg) => self.stream.handle(msg).await,
            None => Ok(Item::Idle),
        }
    }

    /// Dead letters, then every table with something buffered; then the input is
    /// told what is in the lake. With nothing buffered (and not `all_positions`),
    /// nothing.
    async fn commit(&mut self, all_positions: bool) -> Result<Option<Vec<Landed>>> {
        let s = &mut self.stream;
        if !all_positions && s.letters.is_empty() && !s.tables.values().any(Table::dirty) {
            return Ok(None);
        }
        let landed = s.flush().await?;
        s.settle(&mut self.input);
        Ok(Some(landed))
    }

    async fn apply(&mut self, barrier: Barrier) -> Result<Item<Barrier>> {
        match barrier {
            Barrier::Rebalanced(msg) => {
                self.stream.tables.clear();
                self.stream.letters_from.clear();
                match msg {
                    Some(msg) => self.stream.handle(msg).await,
                    None => Ok(Item::Read),
                }
            }
            Barrier::Evolve { msg, ev, error } => {
                let s = &mut self.stream;
                match s.evolve(&ev, &msg.position(), msg.offset).await? {
                    Ok(()) => s.change(msg, *ev, true).await,
                    Err(why) => {
                        let table = ev.source_table();
                        s.dead(&msg, Some(table), format!("{error} ({why})")).await
                    }
                }
            }
            Barrier::Truncate { msg, tr } => {
                self.stream.truncate_now(msg, tr).await?;
                Ok(Item::Read)
            }
        }
    }

    async fn caught_up(&mut self) -> Result<bool> {
        self.input.caught_up(&self.stream.consumed)
    }

    /// A caught-up run that still holds changes back did not land everything there
    /// was: it says which, rather than looking complete.
    fn finished(&self) -> Result<()> {
        if let Some(tx) = &self.stream.txns {
            let held = tx.held();
            if held > 0 {
                anyhow::bail!(
                    "stream {}: {held} changes were read but not landed, because their source transactions are not complete in what the topics hold: {}. They land once the rest arrives (run again). Check that the connector writes the transaction topic (provide.transaction.metadata = true) and that transaction_topic names it",
                    self.stream.name,
                    tx.waiting(Duration::ZERO).join("; ")
                );
            }
        }
        info!(source = %self.stream.name, "caught up");
        Ok(())
    }

    fn paced(&mut self) -> Vec<(&Arc<TableSchema>, &mut Pace)> {
        self.stream
            .tables
            .values_mut()
            .map(|t| (&t.schema, &mut t.pace))
            .collect()
    }
}
