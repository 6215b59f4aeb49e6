//! Where a stream's messages come from: Kafka topics (rdkafka) or JSON-lines files.
//!
//! Kafka topics are read as a member of a consumer group, so several `tidemark run`
//! workers share a topic's partitions; rebalances are reported to the landing loop
//! ([`Rebalanced`]). Both inputs hand out [`Msg`]s with a partition name and an offset; the landing loop in
//! `stream.rs` does not know which it reads. Positions live in the Delta tables, not
//! here: the Kafka consumer starts each partition at the group's committed offset
//! (or the beginning), and the landing loop skips what a table already has. The
//! group offset is committed only after the data it covers is in Delta, so it never
//! runs ahead of the lake; it is there for lag monitoring and a faster restart.

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};
use tidemark_core::config::StreamConfig;
use tracing::warn;

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
                cfg.path.clone().context("files stream without path")?,
            )?)),
        }
    }

    /// The next message, or `None` after `wait` with nothing new.
    pub async fn next(&mut self, wait: Duration) -> Result<Option<Msg>> {
        match self {
            Input::Kafka(k) => k.next(wait).await,
            Input::Files(f) => match f.next()? {
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
    pub fn caught_up(&self) -> Result<bool> {
        match self {
            Input::Kafka(k) => k.caught_up(),
            Input::Files(f) => Ok(f.todo.is_empty() && f.current.is_none()),
        }
    }

    /// Every message up to `next_offsets` (partition → next offset) is in the lake.
    pub fn landed(&mut self, next_offsets: &BTreeMap<(String, i32), i64>) {
        if let Input::Kafka(k) = self {
            k.commit(next_offsets);
        }
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
    consumer: StreamConsumer<GroupContext>,
    stream: String,
    started: Instant,
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
        let topics: Vec<&str> = cfg.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .with_context(|| format!("stream {name}: subscribing to {topics:?}"))?;
        Ok(Self {
            consumer,
            stream: name.to_string(),
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

    /// Every assigned partition read up to its end (nothing assigned yet: no).
    fn caught_up(&self) -> Result<bool> {
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
            let position = self.consumer.position()?;
            let committed = self.consumer.committed(Duration::from_secs(10))?;
            for e in assigned.elements() {
                let (t, p) = (e.topic(), e.partition());
                let (low, high) = self
                    .consumer
                    .fetch_watermarks(t, p, Duration::from_secs(10))?;
                let at =
                    |tpl: &TopicPartitionList| match tpl.find_partition(t, p).map(|e| e.offset()) {
                        Some(Offset::Offset(o)) => o,
                        _ => low,
                    };
                if at(&position).max(at(&committed)) < high {
                    return Ok(false);
                }
            }
            Ok(true)
        })
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

/// JSON-lines files in a directory, read in name order, then watched for new files.
pub struct FileInput {
    dir: Option<PathBuf>,
    todo: Vec<PathBuf>,
    seen: BTreeSet<PathBuf>,
    current: Option<(String, std::io::BufReader<std::fs::File>, i64)>,
    last_scan: Instant,
}

impl FileInput {
    fn open(path: PathBuf) -> Result<Self> {
        let meta = std::fs::metadata(&path)
            .with_context(|| format!("files stream path {}", path.display()))?;
        let mut f = Self {
            dir: meta.is_dir().then(|| path.clone()),
            todo: if meta.is_dir() {
                Vec::new()
            } else {
                vec![path]
            },
            seen: BTreeSet::new(),
            current: None,
            last_scan: Instant::now(),
        };
        f.scan()?;
        Ok(f)
    }

    /// Queue files of the directory not seen yet (`*.jsonl`, `*.json`, `*.ndjson`).
    fn scan(&mut self) -> Result<()> {
        self.last_scan = Instant::now();
        let Some(dir) = &self.dir else {
            self.todo.retain(|p| !self.seen.contains(p));
            return Ok(());
        };
        let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot list {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && p.extension()
                        .is_some_and(|x| x == "jsonl" || x == "json" || x == "ndjson")
                    && !self.seen.contains(p)
            })
            .collect();
        found.sort();
        self.todo = found;
        Ok(())
    }

    fn next(&mut self) -> Result<Option<Msg>> {
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
            if self.todo.is_empty() && self.last_scan.elapsed() >= Duration::from_secs(1) {
                self.scan()?;
            }
            if self.todo.is_empty() {
                return Ok(None);
            }
            let path = self.todo.remove(0);
            self.seen.insert(path.clone());
            let file = std::fs::File::open(&path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| path.display().to_string());
            self.current = Some((name, std::io::BufReader::new(file), 0));
        }
    }
}
