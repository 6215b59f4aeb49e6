//! Where a stream's messages come from: Kafka topics (rdkafka) or JSON-lines files.
//!
//! Kafka topics are read as a member of a consumer group, so several `tidemark run`
//! workers share a topic's partitions; rebalances are reported to the landing loop
//! ([`Rebalanced`]). Both inputs hand out [`Msg`]s with a partition name and an offset; the landing loop in
//! `events.rs` does not know which it reads. Positions live in the Delta tables, not
//! here: the Kafka consumer starts each partition at the group's committed offset
//! (or the beginning), and the landing loop skips what a table already has. The
//! group offset is committed only after the data it covers is in Delta, so it never
//! runs ahead of the lake; it is there for lag monitoring and a faster restart.

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};
use tidemark_core::config::StreamConfig;
use tidemark_lake::object_store::path::Path as ObjectPath;
use tidemark_lake::object_store::{ObjectStore, ObjectStoreExt};
use tracing::{info, warn};

/// One message, from either input.
#[derive(Debug, Clone)]
pub struct Msg {
    /// Kafka topic, or the file's name.
    pub topic: String,
    /// Kafka partition; 0 for a file.
    pub partition: i32,
    /// Kafka offset, or line number (1-based) in the file.
    pub offset: i64,
    /// Raw key.
    pub key: Option<Vec<u8>>,
    /// Raw value (`None`: a Kafka tombstone).
    pub value: Option<Vec<u8>>,
    /// Read from a file: the line may be a `{"key", "value"}` wrapper.
    pub file_line: bool,
}

impl Msg {
    /// The partition's name in table states and dead-letter app ids.
    pub fn partition_name(&self) -> String {
        if self.file_line {
            self.topic.clone()
        } else {
            format!("{}/{}", self.topic, self.partition)
        }
    }

    /// Where the message is, for messages and `_source_pos` fallbacks.
    pub fn position(&self) -> String {
        if self.file_line {
            format!("{}:{}", self.topic, self.offset)
        } else {
            format!("{}/{}/{}", self.topic, self.partition, self.offset)
        }
    }
}

/// A stream's input.
pub enum Input {
    /// Kafka topics.
    Kafka(Box<KafkaInput>),
    /// Files of events.
    Files(FileInput),
}

impl Input {
    /// Open the input of stream `name`.
    pub fn open(name: &str, cfg: &StreamConfig) -> Result<Self> {
        match cfg.kind {
            tidemark_core::config::StreamKind::Kafka => {
                Ok(Input::Kafka(Box::new(KafkaInput::open(name, cfg)?)))
            }
            tidemark_core::config::StreamKind::Files => Ok(Input::Files(FileInput::open(
                cfg.path.as_deref().context("files stream without path")?,
                &cfg.storage_options,
            )?)),
        }
    }

    /// The next message, or `None` after `wait` with nothing new.
    pub async fn next(&mut self, wait: Duration) -> Result<Option<Msg>> {
        match self {
            Input::Kafka(k) => k.next(wait).await,
            Input::Files(f) => match f.next().await? {
                Some(m) => Ok(Some(m)),
                None => {
                    tokio::time::sleep(wait.min(Duration::from_millis(200))).await;
                    Ok(None)
                }
            },
        }
    }

    /// Partitions taken away or given since the last call (Kafka consumer groups).
    pub fn rebalanced(&mut self) -> Vec<Rebalanced> {
        match self {
            Input::Kafka(k) => k.rebalanced(),
            Input::Files(_) => Vec::new(),
        }
    }

    /// Has everything there is now been read? Files: every file to its end. Kafka:
    /// every assigned partition to its end offset.
    pub fn caught_up(&mut self, consumed: &BTreeMap<(String, i32), i64>) -> Result<bool> {
        match self {
            Input::Kafka(k) => k.caught_up(consumed),
            Input::Files(f) => Ok(f.done()),
        }
    }

    /// Read `topic`/`partition` again from `offset` (Kafka; a partition this worker
    /// no longer has is left alone: its owner reads it).
    pub fn seek(&mut self, topic: &str, partition: i32, offset: i64) {
        if let Input::Kafka(k) = self {
            k.seek(topic, partition, offset);
        }
    }

    /// Asks the broker where a partition's log ends now (Kafka; `None` for files).
    pub fn watermarks(&self) -> Option<Watermarks> {
        match self {
            Input::Kafka(k) => Some(Watermarks(k.consumer.clone())),
            Input::Files(_) => None,
        }
    }

    /// Every message up to `next_offsets` (partition → next offset) is in the lake.
    pub fn landed(&mut self, next_offsets: &BTreeMap<(String, i32), i64>) {
        if let Input::Kafka(k) = self {
            k.commit(next_offsets);
        }
    }
}

/// Where partitions' logs end, asked of the broker when needed.
#[derive(Clone)]
pub struct Watermarks(Arc<StreamConsumer<GroupContext>>);

impl Watermarks {
    /// The high watermark (the next offset to be written) of `topic`/`partition`, or
    /// `None` when the broker does not answer within 10 s. Blocking: asked only when a
    /// table's position is beyond what the log was last known to hold.
    pub fn high(&self, topic: &str, partition: i32) -> Option<i64> {
        self.0
            .fetch_watermarks(topic, partition, Duration::from_secs(10))
            .map(|(_, high)| high)
            .ok()
    }
}

/// A change of the consumer's partitions, seen by the group's rebalance callbacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rebalanced {
    /// These partitions were taken away: what is pending for them must not land
    /// (their new owner starts from what the lake has).
    Revoked(Vec<(String, i32)>),
    /// These partitions were given to this worker.
    Assigned(Vec<(String, i32)>),
}

/// Records the group's rebalances for the landing loop. The callbacks run inside
/// `recv()`, on the loop's own task, so the loop sees them before it handles another
/// message or commits anything.
#[derive(Default)]
struct GroupContext {
    events: std::sync::Mutex<Vec<Rebalanced>>,
}

fn partitions(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

impl rdkafka::ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = r {
            let mut e = self.events.lock().expect("rebalance events");
            e.push(Rebalanced::Revoked(partitions(tpl)));
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = r {
            tracing::info!(partitions = tpl.count(), "partitions assigned");
            let mut e = self.events.lock().expect("rebalance events");
            e.push(Rebalanced::Assigned(partitions(tpl)));
        }
    }
}

/// Kafka topics read by one member of a consumer group.
pub struct KafkaInput {
    consumer: Arc<StreamConsumer<GroupContext>>,
    stream: String,
    topics: Vec<Subscription>,
    /// When `caught_up` last said which partitions it waits for.
    waiting_said: Option<Instant>,
    started: Instant,
}

/// One entry of a stream's `topics`.
enum Subscription {
    Name(String),
    Pattern(regex::Regex),
}

/// How long `--until-caught-up` waits for the group to assign partitions.
const ASSIGN_TIMEOUT: Duration = Duration::from_secs(120);

impl KafkaInput {
    fn open(name: &str, cfg: &StreamConfig) -> Result<Self> {
        let mut c = ClientConfig::new();
        // Topic patterns: new topics (Debezium makes one per table) are found within
        // half a minute unless the properties say otherwise.
        c.set("topic.metadata.refresh.interval.ms", "30000");
        for (k, v) in &cfg.properties {
            c.set(k, v);
        }
        c.set(
            "bootstrap.servers",
            cfg.brokers.as_deref().unwrap_or_default(),
        )
        .set(
            "group.id",
            cfg.group_id
                .clone()
                .unwrap_or_else(|| format!("tidemark-{name}")),
        )
        .set("client.id", format!("tidemark-{name}"))
        // Offsets are committed by tidemark after the Delta commit, never before.
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        // Transactional producers' aborted messages never land.
        .set("isolation.level", "read_committed");
        if let Some(p) = cfg.password(name)? {
            c.set("sasl.password", p);
        }
        let consumer: StreamConsumer<GroupContext> = c
            .create_with_context(GroupContext::default())
            .with_context(|| {
                format!("stream {name}: cannot create the Kafka consumer (check brokers and properties)")
            })?;
        let subscribed = cfg.subscribed_topics();
        let topics: Vec<&str> = subscribed.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .with_context(|| format!("stream {name}: subscribing to {topics:?}"))?;
        let topics = subscribed
            .iter()
            .map(|t| match t.starts_with('^') {
                true => regex::Regex::new(t)
                    .map(Subscription::Pattern)
                    .with_context(|| format!("stream {name}: topic pattern {t}")),
                false => Ok(Subscription::Name(t.clone())),
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            consumer: Arc::new(consumer),
            stream: name.to_string(),
            topics,
            waiting_said: None,
            started: Instant::now(),
        })
    }

    async fn next(&mut self, wait: Duration) -> Result<Option<Msg>> {
        match tokio::time::timeout(wait, self.consumer.recv()).await {
            Err(_) => Ok(None),
            Ok(Ok(m)) => Ok(Some(Msg {
                topic: m.topic().to_string(),
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().map(<[u8]>::to_vec),
                file_line: false,
            })),
            // librdkafka retries broker and network trouble itself; these errors are
            // reports, not a broken consumer.
            Ok(Err(e @ (KafkaError::MessageConsumption(_) | KafkaError::PartitionEOF(_)))) => {
                warn!(stream = %self.stream, error = %e, "Kafka reported a consumption error; librdkafka keeps retrying");
                Ok(None)
            }
            Ok(Err(e)) => Err(e).with_context(|| format!("stream {}: reading Kafka", self.stream)),
        }
    }

    fn rebalanced(&mut self) -> Vec<Rebalanced> {
        std::mem::take(
            &mut *self
                .consumer
                .context()
                .events
                .lock()
                .expect("rebalance events"),
        )
    }

    /// Every partition of the subscribed topics read up to its end (nothing assigned
    /// yet: no). `consumed` has the next offset of each partition read by this
    /// process; the others — this worker's not read yet, and those the group gave to
    /// other members — are compared by the group's committed offset, which a member
    /// commits only after landing. So a partition held by another member (or by a
    /// killed one the broker has not expired yet) keeps a backfill waiting until the
    /// group has landed it, rather than ending with it unread.
    fn caught_up(&mut self, consumed: &BTreeMap<(String, i32), i64>) -> Result<bool> {
        let assigned = self.consumer.assignment()?;
        if assigned.count() == 0 {
            if self.started.elapsed() > ASSIGN_TIMEOUT {
                bail!(
                    "stream {}: no partition was assigned within {}s; check that the topics exist and that the group is not held by other members",
                    self.stream,
                    ASSIGN_TIMEOUT.as_secs()
                );
            }
            return Ok(false);
        }
        tokio::task::block_in_place(|| {
            let timeout = Duration::from_secs(10);
            let metadata = self.consumer.fetch_metadata(None, timeout)?;
            // This worker's own partitions first (by what it read): while one of
            // them is behind, there is no need to ask the group about the others.
            let mut others = TopicPartitionList::new();
            let mut high_of = BTreeMap::new();
            for t in metadata.topics() {
                if !self.subscribes(t.name()) {
                    continue;
                }
                for p in t.partitions() {
                    let (low, high) = self.consumer.fetch_watermarks(t.name(), p.id(), timeout)?;
                    match consumed.get(&(t.name().to_string(), p.id())) {
                        Some(next) if *next < high => return Ok(false),
                        Some(_) => {}
                        None => {
                            others.add_partition(t.name(), p.id());
                            high_of.insert((t.name().to_string(), p.id()), (low, high));
                        }
                    }
                }
            }
            let mut behind = Vec::new();
            if others.count() > 0 {
                let committed = self.consumer.committed_offsets(others, timeout)?;
                for e in committed.elements() {
                    let (t, p) = (e.topic(), e.partition());
                    let (low, high) = high_of[&(t.to_string(), p)];
                    let at = match e.offset() {
                        Offset::Offset(o) => o,
                        _ => low,
                    };
                    if at < high {
                        behind.push(format!("{t}/{p} at {at} of {high}"));
                    }
                }
            }
            if behind.is_empty() {
                return Ok(true);
            }
            // Waiting on partitions this worker does not read (yet): say which, now
            // and then, so a backfill that waits on a held partition is not a mystery.
            if self
                .waiting_said
                .is_none_or(|t| t.elapsed() > Duration::from_secs(30))
            {
                info!(stream = %self.stream, partitions = %behind.join(", "),
                    "not caught up: the group has not landed these partitions to their end yet (held by another member, or not assigned yet)");
                self.waiting_said = Some(Instant::now());
            }
            Ok(false)
        })
    }

    /// Does the subscription take `topic`? (`^`: a regular expression, as
    /// librdkafka reads it.)
    fn subscribes(&self, topic: &str) -> bool {
        self.topics.iter().any(|s| match s {
            Subscription::Name(n) => n == topic,
            Subscription::Pattern(r) => r.is_match(topic),
        })
    }

    fn seek(&mut self, topic: &str, partition: i32, offset: i64) {
        match self.consumer.seek(
            topic,
            partition,
            Offset::Offset(offset),
            Duration::from_secs(10),
        ) {
            Ok(()) => {
                info!(stream = %self.stream, topic, partition, offset, "reading the partition again from what the lake has")
            }
            // Not assigned here any more: its owner reads it from the lake's position.
            Err(e) => {
                info!(stream = %self.stream, topic, partition, error = %e, "partition not re-read here (no longer this worker's)")
            }
        }
    }

    fn commit(&mut self, next_offsets: &BTreeMap<(String, i32), i64>) {
        let mut tpl = TopicPartitionList::new();
        for ((t, p), o) in next_offsets {
            if tpl.add_partition_offset(t, *p, Offset::Offset(*o)).is_err() {
                return;
            }
        }
        if tpl.count() == 0 {
            return;
        }
        // Async: the group offset is a hint (the lake has the real positions), so a
        // failed commit costs a longer replay at restart, never a wrong result.
        if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
            warn!(stream = %self.stream, error = %e, "could not commit the consumer group offsets (the lake has the positions; a restart replays a little more)");
        }
    }
}

/// Where a files stream reads.
enum Files {
    /// A local directory (watched for new files) or one local file.
    Local {
        dir: Option<PathBuf>,
        file: Option<PathBuf>,
    },
    /// Objects under an S3 prefix (listed again for new ones).
    Store {
        store: Arc<dyn ObjectStore>,
        prefix: ObjectPath,
    },
}

/// A file to read: its name (the partition) and where it is.
enum FileRef {
    Local(PathBuf),
    Object(Arc<dyn ObjectStore>, ObjectPath),
}

/// JSON-lines files, read in name order, then watched for new files.
pub struct FileInput {
    files: Files,
    todo: Vec<(String, FileRef)>,
    seen: BTreeSet<String>,
    current: Option<(String, Box<dyn BufRead + Send>, i64)>,
    last_scan: Option<Instant>,
}

fn is_events_file(name: &str) -> bool {
    [".jsonl", ".json", ".ndjson"]
        .iter()
        .any(|x| name.ends_with(x))
}

impl FileInput {
    fn open(path: &str, options: &BTreeMap<String, String>) -> Result<Self> {
        let files = if path.starts_with("s3://") {
            let location = if path.ends_with('/') {
                path.to_string()
            } else {
                format!("{path}/")
            };
            let wh = tidemark_lake::Warehouse::new(
                &location,
                options
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            )
            .with_context(|| format!("files stream path {path}"))?;
            let (store, prefix) = wh
                .object_store()
                .with_context(|| format!("files stream path {path}: not an object store"))?;
            Files::Store { store, prefix }
        } else {
            let p = PathBuf::from(path);
            let meta = std::fs::metadata(&p)
                .with_context(|| format!("files stream path {}", p.display()))?;
            if meta.is_dir() {
                Files::Local {
                    dir: Some(p),
                    file: None,
                }
            } else {
                Files::Local {
                    dir: None,
                    file: Some(p),
                }
            }
        };
        Ok(Self {
            files,
            todo: Vec::new(),
            seen: BTreeSet::new(),
            current: None,
            last_scan: None,
        })
    }

    /// Queue the files not seen yet, in name order.
    async fn scan(&mut self) -> Result<()> {
        self.last_scan = Some(Instant::now());
        let mut found: Vec<(String, FileRef)> = match &self.files {
            Files::Local { file: Some(f), .. } => {
                let name = f.file_name().map_or_else(
                    || f.display().to_string(),
                    |n| n.to_string_lossy().into_owned(),
                );
                vec![(name, FileRef::Local(f.clone()))]
            }
            Files::Local { dir: Some(dir), .. } => std::fs::read_dir(dir)
                .with_context(|| format!("cannot list {}", dir.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .filter_map(|p| {
                    let name = p.file_name()?.to_string_lossy().into_owned();
                    is_events_file(&name).then_some((name, FileRef::Local(p)))
                })
                .collect(),
            Files::Local { .. } => Vec::new(),
            Files::Store { store, prefix } => {
                let mut out = Vec::new();
                let mut list = store.list(Some(prefix));
                while let Some(meta) = list.next().await {
                    let meta = meta.with_context(|| format!("listing {prefix}"))?;
                    let name = meta
                        .location
                        .prefix_match(prefix)
                        .map(|parts| {
                            parts
                                .map(|p| p.as_ref().to_string())
                                .collect::<Vec<_>>()
                                .join("/")
                        })
                        .unwrap_or_else(|| meta.location.to_string());
                    if is_events_file(&name) {
                        out.push((name, FileRef::Object(store.clone(), meta.location)));
                    }
                }
                out
            }
        };
        found.retain(|(n, _)| !self.seen.contains(n));
        found.sort_by(|a, b| a.0.cmp(&b.0));
        self.todo = found;
        Ok(())
    }

    async fn next(&mut self) -> Result<Option<Msg>> {
        loop {
            if let Some((name, reader, line)) = &mut self.current {
                let mut buf = Vec::new();
                let n = reader
                    .read_until(b'\n', &mut buf)
                    .with_context(|| format!("reading {name}"))?;
                if n > 0 {
                    *line += 1;
                    if buf.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    if *line == 1 && buf.starts_with(b"\xEF\xBB\xBF") {
                        buf.drain(..3);
                    }
                    return Ok(Some(Msg {
                        topic: name.clone(),
                        partition: 0,
                        offset: *line,
                        key: None,
                        value: Some(buf),
                        file_line: true,
                    }));
                }
                self.current = None;
            }
            if self.todo.is_empty()
                && self
                    .last_scan
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
            {
                self.scan().await?;
            }
            if self.todo.is_empty() {
                return Ok(None);
            }
            let (name, file) = self.todo.remove(0);
            self.seen.insert(name.clone());
            let reader: Box<dyn BufRead + Send> = match file {
                FileRef::Local(path) => Box::new(std::io::BufReader::new(
                    std::fs::File::open(&path)
                        .with_context(|| format!("cannot open {}", path.display()))?,
                )),
                // An object is read whole: event dumps are split into files of a
                // size that fits in memory (topic-dump tools roll them).
                FileRef::Object(store, path) => {
                    let bytes = store
                        .get(&path)
                        .await
                        .with_context(|| format!("reading {path}"))?
                        .bytes()
                        .await
                        .with_context(|| format!("reading {path}"))?;
                    Box::new(std::io::Cursor::new(bytes))
                }
            };
            self.current = Some((name, reader, 0));
        }
    }

    fn done(&self) -> bool {
        self.todo.is_empty() && self.current.is_none() && self.last_scan.is_some()
    }
}
